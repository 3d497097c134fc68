"""Run lit-dpo in this process and SIGKILL it at a chosen moment inside a library's write.

``lit_dpo.files.kill_point`` kills at lit-dpo's own renames; the writes that ``datasets`` and
``transformers`` do for lit-dpo have no such hook, so this script wraps the library call where the
kill should land and then runs lit-dpo as usual:

    python tests/kill_inside.py WHERE lit-dpo ARGS...   # python -m lit_dpo ARGS
    python tests/kill_inside.py WHERE resolve NAME      # lit_dpo.sources.resolve_model(NAME)

WHERE is one of:

- ``tokenizing@N``: at the N-th pair tokenized, while ``datasets.map`` writes the tokenized
  split into its cache (its temporary file open, part of the rows in it);
- ``tokenized-cache-rename``: the tokenized split written in full under ``datasets``' temporary
  name, before it is moved to its cache name;
- ``converted-tokenizer``: a GGUF model's conversion has written the model's weights but not
  yet its tokenizer;
- ``training-step@N``: at the N-th training step, this process and the one that launched it
  (``torchrun``'s agent), as when the machine running them dies;
- ``hang-at-step@N``: at the N-th training step, this process stops answering (sleeps) without
  dying, as a machine that hangs;
- ``none``: not killed (the same process for the runs that finish).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_while_tokenizing(nth: int) -> None:
    import lit_dpo.data.datamodule as datamodule

    encode_row = datamodule._encode_row
    seen = []

    def encode_then_die(*args, **kwargs):
        seen.append(1)
        if len(seen) == nth:
            _die()
        return encode_row(*args, **kwargs)

    datamodule._encode_row = encode_then_die


def _kill_before_the_cache_rename() -> None:
    import datasets

    move = shutil.move

    def die_before_moving_tokens(source, destination, *args, **kwargs):
        name = os.path.basename(str(destination))
        if name.startswith("cache-") and name.endswith(".arrow"):
            if "chosen_ids" in datasets.Dataset.from_file(str(source)).column_names:
                _die()
        return move(source, destination, *args, **kwargs)

    shutil.move = die_before_moving_tokens  # datasets.arrow_dataset calls shutil.move


def _kill_before_the_tokenizer_is_saved() -> None:
    from transformers import PreTrainedTokenizerBase

    def die(self, *args, **kwargs):
        _die()

    PreTrainedTokenizerBase.save_pretrained = die


def _fail_machine_at_step(nth: int, hang: bool) -> None:
    from lit_dpo.train.module import DPOModule

    training_step = DPOModule.training_step
    seen = []

    def step_then_fail(self, *args, **kwargs):
        seen.append(1)
        if len(seen) == nth:
            if hang:
                print(f"hanging since {time.time()}", flush=True)
                time.sleep(3600)
            os.kill(os.getppid(), signal.SIGKILL)  # the launcher first: it would restart us
            _die()
        return training_step(self, *args, **kwargs)

    DPOModule.training_step = step_then_fail


def main(argv: list[str]) -> None:
    where, what, *args = argv
    if where.startswith("tokenizing@"):
        _kill_while_tokenizing(int(where.partition("@")[2]))
    elif where == "tokenized-cache-rename":
        _kill_before_the_cache_rename()
    elif where == "converted-tokenizer":
        _kill_before_the_tokenizer_is_saved()
    elif where.startswith(("training-step@", "hang-at-step@")):
        _fail_machine_at_step(int(where.partition("@")[2]), hang=where.startswith("hang"))
    elif where != "none":
        raise SystemExit(f"unknown kill point {where!r}")
    if what == "resolve":
        from lit_dpo.sources import resolve_model

        print(resolve_model(args[0]))
    elif what == "lit-dpo":
        from lit_dpo.cli import main as lit_dpo

        lit_dpo(args)
    else:
        raise SystemExit(f"unknown command {what!r}: lit-dpo or resolve")


if __name__ == "__main__":
    main(sys.argv[1:])
