"""Preference-data schemas, validation and conversion to/from Hugging Face datasets.

Column names follow TRL so that data moves between prefkit and TRL unchanged:

- pairwise: ``prompt``, ``chosen``, ``rejected`` (strings or lists of token ids), optional ``strength`` in [0, 1],
  the probability that ``chosen`` beats ``rejected`` (a soft label; 1 means a hard preference), and optional
  ``gold``, a reference response (Triple PO's triples);
- listwise: ``prompt``, ``responses`` (K >= 2), ``scores`` (K finite floats, higher is better);
- joint (DOVE / JPO): ``prompt_chosen``, ``chosen``, ``prompt_rejected``, ``rejected``: a preference between two
  (instruction, response) pairs whose instructions may differ; a pairwise row is the joint row with equal prompts;
- tree: :class:`PreferenceTree`, a prompt with a tree of step continuations (:class:`StepNode`, each with a step
  reward), flattened by :meth:`PreferenceTree.to_listwise` into a ranked list of its leaves (root-to-leaf paths) with
  the per-step rewards and texts, and by :func:`step_token_spans` into per-step token spans.

Every check raises :class:`PreferenceDataError` naming the row index and the field, never a silent skip.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAIRWISE_FIELDS = ("prompt", "chosen", "rejected")
LISTWISE_FIELDS = ("prompt", "responses", "scores")
JOINT_FIELDS = ("prompt_chosen", "chosen", "prompt_rejected", "rejected")


class PreferenceDataError(ValueError):
    """Bad preference data; ``row`` and ``field`` say where, and for rows read from a file ``source`` names the file
    and ``line`` its line (JSON Lines and CSV files; ``None`` where a file has no lines to speak of)."""

    def __init__(
        self, row: int | None, field: str | None, message: str, source: str | None = None, line: int | None = None
    ):
        self.row, self.field, self.source, self.line, self.reason = row, field, source, line, message
        where = ", ".join(
            p
            for p in (
                source or "",
                f"line {line}" if line is not None else "",
                f"row {row}" if row is not None else "",
                f"field {field!r}" if field else "",
            )
            if p
        )
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, source: str, lines: Sequence[int | None] | None = None) -> PreferenceDataError:
        """The same error, naming the file ``source`` and, when ``lines`` maps rows to file lines, the line."""
        line = lines[self.row] if lines is not None and self.row is not None and self.row < len(lines) else None
        return PreferenceDataError(self.row, self.field, self.reason, source=source, line=line)


def _check_text(row: int, field: str, value: Any, allow_empty: bool = False) -> None:
    """A text field is a non-empty string or a non-empty list of int token ids."""
    if isinstance(value, str):
        if not allow_empty and not value.strip():
            raise PreferenceDataError(row, field, "is empty")
        return
    if isinstance(value, Sequence) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        if not allow_empty and len(value) == 0:
            raise PreferenceDataError(row, field, "is an empty list of token ids")
        return
    raise PreferenceDataError(row, field, f"must be a string or a list of token ids, got {type(value).__name__}")


def _check_number(row: int, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PreferenceDataError(row, field, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise PreferenceDataError(row, field, f"must be finite, got {value}")
    return float(value)


def _require(row: int, example: Any, fields: Sequence[str]) -> None:
    if not isinstance(example, Mapping):
        raise PreferenceDataError(row, None, f"must be a mapping of fields, got {type(example).__name__}")
    for f in fields:
        if f not in example:
            raise PreferenceDataError(row, f, f"is missing (row has {sorted(example)})")


def validate_pairwise(rows: Iterable[Mapping[str, Any]], allow_identical: bool = False) -> list[dict]:
    """Check pairwise rows and return them as a list of plain dicts.

    ``chosen == rejected`` is refused unless ``allow_identical``: such a pair carries no preference and its DPO
    gradient is exactly zero.
    """
    out = []
    for i, ex in enumerate(rows):
        _require(i, ex, PAIRWISE_FIELDS)
        for f in PAIRWISE_FIELDS:
            _check_text(i, f, ex[f], allow_empty=(f == "prompt"))
        if not allow_identical and list(ex["chosen"]) == list(ex["rejected"]):
            raise PreferenceDataError(i, "rejected", "is identical to 'chosen' (a tie is not a preference)")
        if "gold" in ex:  # triples (Triple PO): a gold response besides chosen and rejected
            _check_text(i, "gold", ex["gold"])
        row = dict(ex)
        if "strength" in ex and ex["strength"] is not None:
            s = _check_number(i, "strength", ex["strength"])
            if not 0.0 <= s <= 1.0:
                raise PreferenceDataError(i, "strength", f"must lie in [0, 1], got {s}")
            row["strength"] = s
        out.append(row)
    if not out:
        raise PreferenceDataError(None, None, "no rows")
    return out


def validate_listwise(
    rows: Iterable[Mapping[str, Any]],
    allow_ties: bool = True,
    allow_empty: bool = False,
    allow_all_tied: bool = False,
) -> list[dict]:
    """Check listwise rows: K >= 2 responses, one finite score each, ties only where ``allow_ties``. A list whose
    scores are all equal carries no preference (pair losses give it 0, Plackett-Luce a constant) and is refused, as
    an identical pair is, unless ``allow_all_tied``. Empty responses are refused unless ``allow_empty``. A policy's
    own samples may legitimately be empty or all tied: pass both flags for those."""
    out = []
    for i, ex in enumerate(rows):
        _require(i, ex, LISTWISE_FIELDS)
        _check_text(i, "prompt", ex["prompt"], allow_empty=True)
        responses, scores = ex["responses"], ex["scores"]
        if isinstance(responses, str) or not isinstance(responses, Sequence):
            raise PreferenceDataError(i, "responses", "must be a list of responses")
        if isinstance(scores, str) or not isinstance(scores, Sequence):
            raise PreferenceDataError(i, "scores", "must be a list of numbers")
        if len(responses) < 2:
            raise PreferenceDataError(i, "responses", f"needs at least 2 responses, got {len(responses)}")
        if len(scores) != len(responses):
            raise PreferenceDataError(i, "scores", f"has {len(scores)} scores for {len(responses)} responses")
        for k, r in enumerate(responses):
            _check_text(i, f"responses[{k}]", r, allow_empty=allow_empty)
        fs = [_check_number(i, f"scores[{k}]", s) for k, s in enumerate(scores)]
        if not allow_ties and len(set(fs)) < len(fs):
            raise PreferenceDataError(i, "scores", f"has ties ({fs}) and this loss does not allow them")
        if not allow_all_tied and len(set(fs)) == 1:
            raise PreferenceDataError(i, "scores", f"are all equal ({fs[0]}): the list carries no preference")
        out.append({**ex, "scores": fs})
    if not out:
        raise PreferenceDataError(None, None, "no rows")
    return out


def validate_joint(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Check joint rows (DOVE): two non-empty (prompt, response) pairs per row that are not the same pair."""
    out = []
    for i, ex in enumerate(rows):
        _require(i, ex, JOINT_FIELDS)
        for f in JOINT_FIELDS:
            _check_text(i, f, ex[f])
        if (list(ex["prompt_chosen"]), list(ex["chosen"])) == (list(ex["prompt_rejected"]), list(ex["rejected"])):
            raise PreferenceDataError(i, "rejected", "is the same (prompt, response) pair as the chosen one")
        out.append(dict(ex))
    if not out:
        raise PreferenceDataError(None, None, "no rows")
    return out


def pairwise_to_joint(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Conditional pairs as joint rows (the same prompt on both sides), so both kinds can be mixed in one batch.
    Converts only; validate with :func:`validate_pairwise` first where the rows come from outside."""
    return [
        {**{k: v for k, v in r.items() if k != "prompt"}, "prompt_chosen": r["prompt"], "prompt_rejected": r["prompt"]}
        for r in rows
    ]


def listwise_to_pairwise(
    rows: Iterable[Mapping[str, Any]], how: str = "all", allow_empty: bool = False, allow_all_tied: bool = False
) -> list[dict]:
    """Expand ranked lists into pairs: ``how="all"`` (every untied pair) or ``"best_worst"``. The lists are checked
    by :func:`validate_listwise` (``allow_empty``, ``allow_all_tied``: for a policy's own samples); an all-tied list
    gives no pair."""
    pairs = []
    for ex in validate_listwise(rows, allow_empty=allow_empty, allow_all_tied=allow_all_tied):
        order = sorted(range(len(ex["scores"])), key=lambda k: -ex["scores"][k])
        if how == "best_worst":
            idx = [(order[0], order[-1])] if ex["scores"][order[0]] > ex["scores"][order[-1]] else []
        elif how == "all":
            idx = [(a, b) for n, a in enumerate(order) for b in order[n + 1 :] if ex["scores"][a] > ex["scores"][b]]
        else:
            raise ValueError(f"how must be 'all' or 'best_worst', got {how!r}")
        pairs += [
            {"prompt": ex["prompt"], "chosen": ex["responses"][a], "rejected": ex["responses"][b]} for a, b in idx
        ]
    return pairs


@dataclass
class StepNode:
    """One step of a multi-step response: its text, its reward, and the steps that continue it."""

    text: str
    reward: float
    children: list[StepNode] = field(default_factory=list)


@dataclass
class PreferenceTree:
    """A prompt and a tree of step continuations (Liao et al. 2024, Tree Preference Optimization).

    Each root-to-leaf path is one complete response, its steps joined by ``separator``; leaves that share a prefix
    share its steps. :meth:`to_listwise` turns the tree into a ranked list for a listwise loss.
    """

    prompt: str
    children: list[StepNode]
    separator: str = " | "

    def paths(self) -> list[list[StepNode]]:
        """Root-to-leaf paths, depth first, in the order the children are listed."""
        out: list[list[StepNode]] = []

        def walk(node: StepNode, path: list[StepNode]) -> None:
            path = [*path, node]
            if not node.children:
                out.append(path)
            for c in node.children:
                walk(c, path)

        for c in self.children:
            walk(c, [])
        return out

    def render(self) -> str:
        """The tree as indented text, one step per line with its reward."""
        lines = [self.prompt]

        def walk(node: StepNode, depth: int) -> None:
            lines.append(f"{'    ' * depth}└─ {node.text}   [{node.reward:.2f}]")
            for c in node.children:
                walk(c, depth + 1)

        for c in self.children:
            walk(c, 1)
        return "\n".join(lines)

    def to_listwise(self, score: Callable[[list[str], list[float]], float] | None = None, row: int = 0) -> dict:
        """The leaves as one listwise row, best first: ``prompt``, ``responses`` (steps joined by the separator),
        ``scores``, ``steps`` (each leaf's step texts) and ``step_rewards`` (each leaf's step rewards).

        ``score(steps, rewards)`` maps a leaf's step texts and rewards to its score (default: the mean reward). Raises :class:`PreferenceDataError`
        (naming ``row`` and the field) for an empty step, a non-finite reward, or fewer than 2 leaves.
        """
        score = score or (lambda steps, rewards: sum(rewards) / len(rewards))
        leaves = []
        for k, path in enumerate(self.paths()):
            for d, node in enumerate(path):
                _check_text(row, f"leaf {k} step {d} text", node.text)
                _check_number(row, f"leaf {k} step {d} reward", node.reward)
            steps, rewards = [n.text for n in path], [float(n.reward) for n in path]
            leaves.append((steps, rewards, _check_number(row, f"leaf {k} score", score(steps, rewards))))
        if len(leaves) < 2:
            raise PreferenceDataError(row, "children", f"a tree needs at least 2 leaves, got {len(leaves)}")
        leaves.sort(key=lambda leaf: -leaf[2])  # stable: equal scores keep the tree's order
        return {
            "prompt": self.prompt,
            "responses": [self.separator.join(steps) for steps, _, _ in leaves],
            "scores": [sc for _, _, sc in leaves],
            "steps": [steps for steps, _, _ in leaves],
            "step_rewards": [rewards for _, rewards, _ in leaves],
        }


def step_token_spans(tokenizer, steps: Sequence[str], separator: str = " | ") -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` of each step in the tokenised response ``separator.join(steps)``.

    Indices count response tokens as :func:`prefkit.logps.encode` lays them out (no special tokens; the closing EOS
    comes after the last span and belongs to the last step). A separator belongs to the step it closes, so the spans
    tile the response. Uses the fast tokenizer's character offsets, so it works for any tokenizer, not only
    word-level ones.
    """
    text = separator.join(steps)
    starts, pos = [], 0
    for st in steps:
        starts.append(pos)
        pos += len(st) + len(separator)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    step_of_token = [sum(1 for s0 in starts[1:] if a >= s0) for a, _ in enc["offset_mapping"]]
    spans = []
    for i in range(len(steps)):
        idx = [t for t, s in enumerate(step_of_token) if s == i]
        if not idx:
            raise ValueError(f"step {i} ({steps[i]!r}) has no tokens of its own")
        spans.append((idx[0], idx[-1] + 1))
    return spans


def to_hf_dataset(rows: Iterable[Mapping[str, Any]], kind: str = "pairwise"):
    """Validated rows -> ``datasets.Dataset`` with TRL's column names (what ``DPOTrainer`` expects)."""
    import datasets

    check = {"pairwise": validate_pairwise, "listwise": validate_listwise}
    if kind not in check:
        raise ValueError(f"kind must be one of {sorted(check)}, got {kind!r}")
    rows = check[kind](rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # union of keys: from_list keeps only row 0's
    return datasets.Dataset.from_dict({k: [r.get(k) for r in rows] for k in columns})


def from_hf_dataset(ds, kind: str = "pairwise") -> list[dict]:
    """A ``datasets.Dataset`` (e.g. one prepared for TRL) -> validated prefkit rows."""
    rows = [dict(r) for r in ds]
    return validate_pairwise(rows) if kind == "pairwise" else validate_listwise(rows)


def split_held_out(rows: Sequence[Any], fraction: float = 0.1, min_rows: int = 8) -> tuple[list, list]:
    """``(train, held_out)``: the first ``max(min_rows, fraction * len(rows))`` rows are held out for evaluation."""
    n = max(min_rows, int(len(rows) * fraction))
    if n >= len(rows):
        raise PreferenceDataError(None, None, f"{len(rows)} rows leave none to train on after holding out {n}")
    return list(rows[n:]), list(rows[:n])


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_LIST_FIELDS = ("responses", "scores")  # listwise columns a CSV cell holds as JSON lists


def looks_like_hub_id(source: str) -> bool:
    """``name`` or ``owner/name`` with no data-file suffix: what :func:`read_rows` sends to the Hugging Face Hub when
    no local file or folder of that name exists."""
    return bool(_HUB_ID.fullmatch(source)) and not source.lower().endswith(DATA_SUFFIXES)


def _read_jsonl(path: Path, name: str) -> tuple[list, list[int]]:
    rows, lines = [], []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():  # blank and whitespace-only lines separate nothing
                continue
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError as e:
                raise PreferenceDataError(None, None, f"is not valid JSON ({e.msg}, column {e.colno})", name, n) from e
            lines.append(n)
    return rows, lines


def _read_json(path: Path, name: str) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PreferenceDataError(None, None, f"is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})",
                                  name, e.lineno) from e  # fmt: skip
    if not isinstance(data, list):
        raise PreferenceDataError(None, None, f"holds a JSON {type(data).__name__}, expected a list of rows (one "
                                  "object per row; or write one object per line in a .jsonl file)", name)  # fmt: skip
    return data


def _read_csv(path: Path, name: str) -> tuple[list, list[int]]:
    """CSV rows as strings (an empty cell is an empty string); ``responses`` and ``scores`` cells hold JSON lists and
    a ``strength`` cell a number or nothing."""
    rows, lines = [], []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            n = reader.line_num  # the line the record ends on (a quoted cell may span lines)
            if None in row:
                raise PreferenceDataError(None, None, f"has {len(reader.fieldnames) + len(row[None])} cells for "
                                          f"{len(reader.fieldnames)} columns", name, n)  # fmt: skip
            for k in _LIST_FIELDS:
                if isinstance(row.get(k), str):
                    try:
                        row[k] = json.loads(row[k])
                    except json.JSONDecodeError as e:
                        raise PreferenceDataError(
                            None, k, f"must be a JSON list in a CSV cell ({e.msg})", name, n
                        ) from e
            if row.get("strength") is not None:
                cell = row["strength"].strip()
                try:
                    row["strength"] = float(cell) if cell else None
                except ValueError as e:
                    raise PreferenceDataError(None, "strength", f"must be a number, got {cell!r}", name, n) from e
            rows.append(row)
            lines.append(n)
    return rows, lines


def _read_saved_dataset(path: Path, split: str, name: str) -> list:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise PreferenceDataError(None, None, "is a folder but not a dataset saved with save_to_disk", name) from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise PreferenceDataError(None, None, f"has no split {split!r} (it has {sorted(ds)})", name)
        ds = ds[split]
    return [dict(r) for r in ds]


def read_rows(source: str | Path, split: str = "train") -> tuple[list, list[int] | None, str]:
    """``(rows, lines, name)`` from a local ``.json`` (a list of objects), ``.jsonl`` (one object per line; blank lines
    skipped), ``.csv`` (a header row; list columns as JSON), ``.parquet`` file (suffixes in any case), a folder
    written by ``datasets``' ``save_to_disk``, or otherwise a Hugging Face Hub dataset id (``name`` or
    ``owner/name``). ``lines`` gives each row's line in the file (JSON Lines, CSV), else ``None``; ``name`` is
    what errors call the source. A local path that does not exist is an error, never a Hub request."""
    path = Path(source).expanduser()
    name = str(source)
    if not path.exists():
        if looks_like_hub_id(name):
            import datasets

            return [dict(r) for r in datasets.load_dataset(name, split=split)], None, f"{name} (split {split!r})"
        raise PreferenceDataError(None, None, "no such file or folder", name)
    if path.is_dir():
        return _read_saved_dataset(path, split, name), None, name
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return (*_read_jsonl(path, name), name)
    if suffix == ".json":
        return _read_json(path, name), None, name
    if suffix == ".csv":
        return (*_read_csv(path, name), name)
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist(), None, name
        except pa.ArrowException as e:
            raise PreferenceDataError(None, None, f"is not a readable Parquet file ({e})", name) from e
    raise PreferenceDataError(None, None, f"has an unsupported type {path.suffix!r} (use one of "
                              f"{', '.join(DATA_SUFFIXES)} or a save_to_disk folder)", name)  # fmt: skip


def _load(source: str | Path, split: str, limit: int | None, fields: Sequence[str], validate: Callable) -> list[dict]:
    """Rows of ``source`` (see :func:`read_rows`) through ``validate``; every error names the file and the line or
    row. Conversational fields (lists of messages) are refused."""
    rows, lines, name = read_rows(source, split)
    rows = rows[:limit] if limit else rows
    try:
        for i, r in enumerate(rows):
            _require(i, r, fields)
            for f in fields:
                v = r[f]
                if _is_messages(v) or (f == "responses" and isinstance(v, list) and any(_is_messages(x) for x in v)):
                    raise PreferenceDataError(i, f, "is conversational (a list of messages); render it to text first")
        return validate(rows)
    except PreferenceDataError as e:
        raise e.located(name, lines) from None


def load_pairwise(source: str | Path, split: str = "train", limit: int | None = None) -> list[dict]:
    """Pairwise rows from a local ``.json``, ``.jsonl``, ``.csv`` or ``.parquet`` file, a ``save_to_disk`` folder or a
    Hugging Face Hub dataset id (:func:`read_rows`), validated; the first ``limit`` rows when given. Every error is
    a :class:`PreferenceDataError` naming the file, the line or row, and the field.

    Only string (non-conversational) columns are accepted: a conversational dataset (lists of messages) must be
    rendered to text with its chat template first, and the error says so.
    """
    return _load(source, split, limit, PAIRWISE_FIELDS, validate_pairwise)


def load_joint(source: str | Path, split: str = "train", limit: int | None = None) -> list[dict]:
    """Joint rows (prompt_chosen, chosen, prompt_rejected, rejected) from a file, folder or Hub id, read and
    validated like :func:`load_pairwise`."""
    return _load(source, split, limit, JOINT_FIELDS, validate_joint)


def load_listwise(source: str | Path, split: str = "train", limit: int | None = None) -> list[dict]:
    """Listwise rows (prompt, responses, scores) from a file, folder or Hub id, read and validated like
    :func:`load_pairwise` (in a CSV file, ``responses`` and ``scores`` cells hold JSON lists)."""
    return _load(source, split, limit, LISTWISE_FIELDS, validate_listwise)
