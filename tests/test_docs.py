"""Every command, flag and setting README.md and docs/*.md name exists in the real CLI.

- Command lines: every ``lit-dpo ...`` line of a shell code block (``\\`` continuations joined,
  ``# comments`` dropped, placeholders such as ``$NODE`` filled in; ``torchrun ... -m lit_dpo``,
  ``srun lit-dpo`` and ``VAR=x lit-dpo`` count too), every line of another block that starts with
  ``lit-dpo <command>``, and every inline code span that does, runs through
  ``lit_dpo.cli.main([...args, "--print_config"])`` (``--help`` lines as they are) and must exit 0.
  ``--print_config`` parses and type-checks every value and builds no model.
- Dotted settings: every ``model.objective.beta``, ``data.on_bad_row``, ``--trainer.precision``...
  anywhere in the text is a key of the fit config (as ``--print_config`` prints it, or a linked
  argument).
- Flags in prose: every ```--flag``` in an inline code span is an option of a command it is
  mentioned with: a ``lit-dpo <command>`` or ```command``` of its paragraph, table row or list
  item, or the command named by the nearest heading above that names one, else ``fit``
  (benchmark.md: ``tools/bench.py``). A paragraph naming a script of ``tools/`` (``tools/bench.py``,
  ``tools/quality.py``) may also use that script's options, as its ``--help`` lists them.
- YAML blocks of fit settings parse as a config on top of ``configs/cpu.yaml``.
- Relative links point at files that exist, and ``#anchors`` at their headings.

The parsers are built once per command and reused (``LightningCLI.setup_parser`` memoized), so the
whole file runs in seconds after the imports.
"""

from __future__ import annotations

import io
import re
import shlex
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.cli import LightningCLI

from lit_dpo import cli

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FIT_FAMILY = ("fit", "validate", "test", "predict")
COMMAND_NAMES = (*FIT_FAMILY, *cli.COMMANDS)
# commands that read a fit config: they take every fit setting beside their own
READS_FIT_CONFIG = (*FIT_FAMILY, *(n for n, c in cli.COMMANDS.items() if c.reads_fit_config))
SHELL = {"bash", "sh", "shell", "console"}
# placeholders in example command lines -> a value the parser accepts
PLACEHOLDERS = {"$NODE": "0", "$HOST0": "127.0.0.1", "PATH_OR_HUB_ID": "path/to/reward_model"}
# the command a flag in prose belongs to when its paragraph and headings name none
FILE_COMMAND = {"benchmark.md": "tools/bench.py"}
# last parts of file names that look like dotted settings (data.jsonl, model.safetensors)
FILE_SUFFIXES = {"json", "jsonl", "yaml", "yml", "csv", "md", "png", "html", "py", "txt", "bin"}
FILE_SUFFIXES |= {"parquet", "safetensors", "pt", "ckpt", "gguf"}
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w-]*)")
SPAN = re.compile(r"`([^`]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MENTION = re.compile(
    rf"lit-dpo ({'|'.join(COMMAND_NAMES)})\b|`({'|'.join(COMMAND_NAMES)})`|(tools/\w+\.py)\b"
)


@dataclass(frozen=True)
class Where:
    doc: Path
    line: int

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


@dataclass(frozen=True)
class CommandLine:
    where: Where
    text: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Flag:
    where: Where
    flag: str
    commands: tuple[str, ...]  # the commands (or tools/ scripts) it may belong to


@dataclass
class Doc:
    """What one Markdown file holds, with line numbers."""

    path: Path
    lines: list[str]
    blocks: list[tuple[str, int, list[str]]]  # (language, first line, lines) of fenced blocks
    prose: list[tuple[int, str]]  # (first line, text) of paragraphs, table rows and list items
    headings: list[tuple[int, str]]


def read_doc(path: Path) -> Doc:
    lines = path.read_text().splitlines()
    blocks, prose, headings = [], [], []
    block, paragraph = None, None
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if block is not None:
            if fence and not fence.group(2):
                blocks.append(block)
                block = None
            else:
                block[2].append(line)
            continue
        if fence:
            block, paragraph = (fence.group(2).lower(), number + 1, []), None
            continue
        stripped = line.strip()
        heading = HEADING.match(line)
        if heading:
            headings.append((number, heading.group(2)))
        starts_item = stripped.startswith(("|", "- ", "* ")) or re.match(r"\d+\. ", stripped)
        if not stripped or heading:
            paragraph = None
        elif paragraph is None or starts_item:
            paragraph = [number, stripped]
            prose.append(paragraph)
        else:
            paragraph[1] += "\n" + stripped
        if heading:
            prose.append([number, heading.group(2)])
    return Doc(path, lines, blocks, [tuple(p) for p in prose], headings)


DOC = {path: read_doc(path) for path in DOCS}


def lit_dpo_args(text: str, anywhere: bool) -> tuple[str, ...] | None:
    """The arguments after ``lit-dpo`` (or ``-m lit_dpo``) in a command line; None if it runs no
    lit-dpo. With ``anywhere`` false, the line must start with ``lit-dpo <something>`` (a
    misspelled command counts: the CLI then refuses it)."""
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    if not anywhere:
        words = text.split()
        if len(words) < 2 or words[0] != "lit-dpo":
            return None
    tokens = shlex.split(text, comments=True)
    for i, token in enumerate(tokens):
        if token == "lit-dpo" or token.endswith("/lit-dpo"):
            return tuple(tokens[i + 1 :])
        if token == "-m" and tokens[i + 1 : i + 2] == ["lit_dpo"]:
            return tuple(tokens[i + 2 :])
    return None


def command_lines(doc: Doc) -> list[CommandLine]:
    found = []
    for language, first, lines in doc.blocks:
        if language in ("python", "json", "yaml"):
            continue
        start, joined = first, ""
        for number, line in enumerate(lines, first):
            if not joined:
                start = number
            joined += line.rstrip()
            if joined.endswith("\\"):
                joined = joined[:-1] + " "
                continue
            shell = language in SHELL
            if ("lit-dpo" in joined or "lit_dpo" in joined) if shell else joined.strip():
                args = lit_dpo_args(joined.strip(), anywhere=shell)
                if args is not None:
                    found.append(CommandLine(Where(doc.path, start), joined.strip(), args))
            joined = ""
    for first, text in doc.prose:
        for span in SPAN.finditer(text):
            args = lit_dpo_args(span.group(1).replace("\n", " "), anywhere=False)
            if args is not None:
                line = first + text[: span.start()].count("\n")
                found.append(CommandLine(Where(doc.path, line), span.group(1), args))
    return found


def prose_flags(doc: Doc) -> list[Flag]:
    found = []
    for first, text in doc.prose:
        commands = [m.group(1) or m.group(2) or m.group(3) for m in MENTION.finditer(text)]
        commands = tuple(dict.fromkeys([*commands, heading_command(doc, first)]))
        for span in SPAN.finditer(text):
            words = span.group(1).split()
            if not words or not words[0].startswith("--"):
                continue  # not a flag; or a command line, of lit-dpo (parsed whole) or another
            line = first + text[: span.start()].count("\n")
            for word in words:
                if word.startswith("--"):
                    flag = word.split("=")[0].removesuffix("*").removesuffix(".")
                    found.append(Flag(Where(doc.path, line), flag, commands))
    return found


def heading_command(doc: Doc, line: int) -> str:
    """The command the nearest heading above ``line`` that names one names, else the file's."""
    for number, heading in reversed(doc.headings):
        mentioned = [m.group(1) or m.group(2) or m.group(3) for m in MENTION.finditer(heading)]
        if number <= line and mentioned:
            return mentioned[-1]
    return FILE_COMMAND.get(doc.path.name, "fit")


COMMAND_LINES = [line for doc in DOC.values() for line in command_lines(doc)]
ALL_FLAGS = [flag for doc in DOC.values() for flag in prose_flags(doc)]


def run_cli(args: tuple[str, ...]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``lit_dpo.cli.main(args)``."""
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cli.main(list(args))
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return status, out.getvalue(), err.getvalue()


def checked_args(args: tuple[str, ...]) -> tuple[str, ...]:
    if {"--help", "-h", "--print_config"} & set(args):
        return args
    return (*args, "--print_config")


def _reusing(setup_parser):
    """``LightningCLI.setup_parser`` that builds each CLI's parser once, then hands it out again:
    building one is most of the time a ``--print_config`` takes. Every command line here ends in
    the parser (printed config, help or error), so nothing past parsing needs the rest of the
    set-up."""
    built = {}

    def setup(self, add_subcommands, main_kwargs, subparser_kwargs):
        key = (type(self), getattr(self, "command", None), add_subcommands)
        if key not in built:
            setup_parser(self, add_subcommands, main_kwargs, subparser_kwargs)
            built[key] = self.parser
        self.parser = built[key]

    return setup


@dataclass
class Runs:
    results: dict[tuple[str, ...], tuple[int, str, str]]
    settings: dict[str, set[str]]  # command -> every key its config has (dotted, with prefixes)


def config_keys(printed: str) -> set[str]:
    """Every dotted key of a printed config, prefixes included; a subclass's ``init_args`` are
    keys of their parent too (``trainer.strategy.timeout``), as the command line accepts them."""
    keys = set()

    def walk(node, prefix):
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key == "init_args":
                walk(value, prefix)
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            keys.add(name)
            walk(value, name)

    walk(yaml.safe_load(printed) or {}, "")
    return keys


@pytest.fixture(scope="module")
def runs() -> Runs:
    baseline = [(name, "--print_config") for name in COMMAND_NAMES]
    baseline += [
        (name, "--config", config, "--print_config")
        for name in READS_FIT_CONFIG
        for config in ("configs/cpu.yaml", "configs/multi_gpu.yaml")
    ]
    wanted = baseline + [("fit", "--help")] + [checked_args(c.args) for c in COMMAND_LINES]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        patch.setattr(LightningCLI, "setup_parser", _reusing(LightningCLI.setup_parser))
        results = {args: run_cli(args) for args in dict.fromkeys(wanted)}
    # linked arguments (data.tokenizer follows model.model) are not in a printed config
    linked = set(re.findall(r"-->\s+([\w.]+)", results[("fit", "--help")][1]))
    settings = {name: set() for name in COMMAND_NAMES}
    for args, (status, out, _) in results.items():
        if status == 0 and args[0] in settings and args[-1] == "--print_config":
            settings[args[0]] |= config_keys(out)
    for name in READS_FIT_CONFIG:
        settings[name] |= linked
    for name, keys in settings.items():
        assert keys, f"lit-dpo {name} --print_config printed no config"
    for tool in sorted({c for f in ALL_FLAGS for c in f.commands if c.startswith("tools/")}):
        settings[tool] = tool_options(tool)
    return Runs(results, settings)


def tool_options(script: str) -> set[str]:
    """The options a ``tools/`` script's ``--help`` lists, without their dashes."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{script} --help failed:\n{done.stderr[-2000:]}"
    return set(re.findall(r"(?<![\w-])--([\w-]+)", done.stdout))


def error_of(stderr: str) -> str:
    """The parser's error from a command's stderr, without the usage and the given value."""
    lines = stderr.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("error:")), 0)
    kept = [line for line in lines[start:] if not line.lstrip().startswith("Given value")]
    return "\n".join(kept[:12])


@pytest.mark.parametrize("line", COMMAND_LINES, ids=lambda line: str(line.where))
def test_command_line_parses(line, runs):
    status, _, err = runs.results[checked_args(line.args)]
    assert status == 0, f"{line.where}: `{line.text}` does not parse:\n{error_of(err)}"


def test_docs_show_commands():
    """The extraction itself finds what the docs hold: every command, through both routes."""
    assert {line.args[0] for line in COMMAND_LINES} >= set(COMMAND_NAMES)
    assert any("torchrun" in line.text for line in COMMAND_LINES)
    assert any(line.text.startswith("srun ") for line in COMMAND_LINES)


SETTING = re.compile(
    r"(?<![\w./-])(?:--)?((?:model|data|trainer|health|summary|save_adapter|interrupt)"
    r"(?:\.[A-Za-z_]\w*)+)(?![\w/]|\.\w)"
)


def dotted_settings(doc: Doc) -> list[tuple[Where, str]]:
    python = {
        number
        for language, first, lines in doc.blocks
        if language == "python"
        for number in range(first, first + len(lines))
    }
    found = []
    for number, line in enumerate(doc.lines, 1):
        if number in python:
            continue
        for match in SETTING.finditer(line):
            name = match.group(1)
            if name.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                found.append((Where(doc.path, number), name))
        if line.startswith("|"):
            # a settings table names siblings short: `model.lora.r`, `lora_alpha`, `lora_dropout`
            spans = SPAN.findall(line.split("|")[1])
            group = SETTING.fullmatch(spans[0]) if spans else None
            for short in spans[1:] if group else []:
                if re.fullmatch(r"[a-z_]+", short):
                    parent = group.group(1).rsplit(".", 1)[0]
                    found.append((Where(doc.path, number), f"{parent}.{short}"))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_dotted_settings_exist(doc, runs):
    known = set().union(*(runs.settings[name] for name in READS_FIT_CONFIG))
    missing = [f"{where}: {name}" for where, name in dotted_settings(DOC[doc]) if name not in known]
    assert not missing, "settings the fit config does not have:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_flags_belong_to_their_command(doc, runs):
    def known(flag: Flag) -> bool:
        if flag.flag in {"--config", "--print_config", "--help"}:
            return True
        return any(flag.flag[2:] in runs.settings[command] for command in flag.commands)

    wrong = [
        f"{flag.where}: {flag.flag} is not an option of "
        + " or ".join(
            command if command.startswith("tools/") else f"lit-dpo {command}"
            for command in flag.commands
        )
        for flag in prose_flags(DOC[doc])
        if not known(flag)
    ]
    assert not wrong, "\n".join(wrong)


def yaml_examples(doc: Doc) -> list[tuple[Where, str]]:
    return [
        (Where(doc.path, first), "\n".join(lines))
        for language, first, lines in doc.blocks
        if language in ("yaml", "yml")
    ]


@pytest.mark.parametrize(
    "where,text",
    [
        pytest.param(*example, id=str(example[0]))
        for doc in DOC.values()
        for example in yaml_examples(doc)
    ],
)
def test_yaml_examples_parse(where, text, runs, tmp_path):
    config = yaml.safe_load(text)
    tops = {key.split(".")[0] for key in runs.settings["fit"]}
    if not isinstance(config, dict) or not set(config) <= tops:
        pytest.skip("not a fit config")
    path = tmp_path / "example.yaml"
    path.write_text(text)
    args = ("fit", "--config", "configs/cpu.yaml", "--config", str(path), "--print_config")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        status, _, err = run_cli(args)
    assert status == 0, f"{where}: the YAML does not parse as fit settings:\n{error_of(err)}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(doc):
    broken = []
    for number, line in enumerate(DOC[doc].lines, 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{Where(doc, number)}: {target}: no such file")
            elif anchor and path.suffix == ".md":
                anchors = {slug(h) for _, h in read_doc(path).headings}
                if anchor not in anchors:
                    broken.append(f"{Where(doc, number)}: {target}: no such heading")
    assert not broken, "\n".join(broken)
