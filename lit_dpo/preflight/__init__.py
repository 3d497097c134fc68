"""``lit-dpo preflight``: the command (``command``), the memory model of a training step
(``memory``) and a few real steps timed (``measure``)."""
