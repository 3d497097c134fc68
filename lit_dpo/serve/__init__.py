"""``lit-dpo serve``: the command (``command``), the HTTP app (``app``), the OpenAI request and
response shapes (``api``) and the generation worker (``worker``)."""
