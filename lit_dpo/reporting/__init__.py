"""What a run reports, for callbacks and commands alike: the model card of adapters and merged
models (``model_card``), the facts it is rendered from (``run_facts``) and training curves drawn as
a PNG (``curves``). Nothing here is a callback: ``lit_dpo.callbacks`` and ``lit-dpo export`` /
``lit-dpo plot`` both call it."""
