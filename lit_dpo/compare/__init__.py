"""``lit-dpo compare``: the command (``command``), implicit rewards and held-out metrics
(``scoring``), an outside reward model as judge (``judge``), the prompts and edge cases
(``prompts``) and the report (``report``)."""
