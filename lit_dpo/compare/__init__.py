"""``lit-dpo compare``: the command (``command``), implicit rewards and held-out metrics
(``scoring``), judges (a reward model: ``judge``; an AI judge over an OpenAI-compatible endpoint:
``ai_judge``, its question and verdicts: ``pairwise``; every judge's verdicts in one shape:
``verdicts``; their statistics: ``stats``), answer health (``health``), the prompts and edge
cases (``prompts``) and the report (``report``, its judge and health tables ``judge_tables``, its
files ``report_files``)."""
