"""ReCoRD (Zhang et al. 2018): fill a news query's blank with an entity of the passage."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import SquadMetric, squad_normalize
from promptscale.data.tasks.spec import TaskSpec

BLANK = "_____"  # the template's blank for "@placeholder"


# --------------------------------------------------------------------------- schema


def check(record: dict, split: str) -> None:
    """Official schema: ``idx``, ``passage: {text, entities}``, ``qas: [{query, idx, answers}]``.

    Entity and answer offsets are inclusive (``text[start:end + 1]``); every answer must be
    the passage text at its offsets; query ids must not repeat within the record.
    """
    schema.get(record, "idx", int)
    schema.optional(record, "source", str)
    passage = schema.get(record, "passage", dict)
    text = schema.text(passage, "text", "passage.")
    for i, entity in enumerate(schema.objects(passage, "entities", "passage.")):
        path = f"passage.entities[{i}]."
        start, end = schema.get(entity, "start", int, path), schema.get(entity, "end", int, path)
        schema.span(start, end, len(text), f"{path}start/end", inclusive=True)
    query_ids = []
    for qi, qa in enumerate(schema.objects(record, "qas")):
        qpath = f"qas[{qi}]."
        if "@placeholder" not in schema.text(qa, "query", qpath):
            raise schema.FieldError(f"{qpath}query", "has no '@placeholder'")
        query_ids.append((f"{qpath}idx", schema.get(qa, "idx", int, qpath)))
        if "answers" not in qa and split == "test":
            continue
        for ai, answer in enumerate(schema.objects(qa, "answers", qpath)):
            _check_answer(answer, text, f"{qpath}answers[{ai}].")
    schema.unique_ids(query_ids, "query")


def _check_answer(answer: dict, text: str, path: str) -> None:
    start, end = schema.get(answer, "start", int, path), schema.get(answer, "end", int, path)
    schema.span(start, end, len(text), f"{path}start/end", inclusive=True)
    if text[start : end + 1] != schema.text(answer, "text", path):
        raise schema.FieldError(
            f"{path}text", f"{answer['text']!r} != passage text[{start}:{end}+1] {text[start : end + 1]!r}"
        )


# --------------------------------------------------------------------------- examples


def passage_text(text: str) -> str:
    """Turns ReCoRD's ``@highlight`` lines into sentences, exactly as T5 does.

    A highlight that follows sentence-final punctuation or a quote is joined with a space;
    any other is joined with ". " (two regex passes, in this order).
    """
    text = re.sub(r"(\.|\?|\!|\"|')\n@highlight\n", r"\1 ", text)
    return re.sub(r"\n@highlight\n", ". ", text)


def entities(record: dict) -> tuple[str, ...]:
    """The distinct entity texts, sorted: TFDS, which T5 read ReCoRD from, lists them so."""
    text = record["passage"]["text"]
    return tuple(sorted({text[e["start"] : e["end"] + 1] for e in record["passage"]["entities"]}))


def _answers(qa: dict) -> tuple[str, ...]:
    """Distinct gold answer texts of a query, in order of first appearance."""
    return tuple(dict.fromkeys(a["text"] for a in qa.get("answers") or ()))


def _query_example(inputs: str, candidates: tuple[str, ...], qa: dict) -> Example:
    """The evaluation example of one query: the entities as candidates, every gold text kept.

    ``label`` is the first gold answer among the candidates (-1 if none, or unlabelled).
    """
    answers = _answers(qa)
    label = next((candidates.index(a) for a in answers if a in candidates), -1)
    targets = candidates[label] if label >= 0 else (answers[0] if answers else "")
    return Example("record", inputs, targets, candidates, label, str(qa["idx"]), answers, str(qa["idx"]))


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``record query: {query} entities: {e1, e2} passage: {passage}`` -> entity text.

    Training follows T5: one example per distinct gold answer, so a query with two gold
    answers teaches both and a query with none (test) teaches nothing. Evaluation needs one
    example per query, with the entities as candidates for rank classification and all gold
    texts kept for the max-over-answers EM/F1.
    """
    candidates = entities(record)
    tail = [("entities", ", ".join(candidates)), ("passage", passage_text(record["passage"]["text"]))]
    out = []
    for qa in record["qas"]:
        inputs = common.join("record", [("query", qa["query"]), *tail], prefix=prefix)
        example = _query_example(inputs, candidates, qa)
        if not train:
            out.append(example)
            continue
        for answer in example.answers:
            label = candidates.index(answer) if answer in candidates else -1
            out.append(dataclasses.replace(example, targets=answer, label=label))
    return out


def template(record: dict) -> list[Example]:
    """``{passage}\\nFill in the blank: {query with _____}\\nAnswer:`` -> one of the entities."""
    candidates = entities(record)
    passage = passage_text(record["passage"]["text"])
    out = []
    for qa in record["qas"]:
        query = qa["query"].replace("@placeholder", BLANK)
        out.append(_query_example(f"{passage}\nFill in the blank: {query}\nAnswer:", candidates, qa))
    return out


def postprocess(text: str, example: Example) -> tuple[str, bool]:
    """The text itself (scored by SQuAD EM/F1), valid iff it names one of the candidate entities.

    T5 scores ReCoRD's text directly and has no notion of an invalid answer; ours: the text
    is valid when its SQuAD normalisation equals that of one of the example's candidates, so
    the invalid rate counts outputs that are no entity of the passage at all.
    """
    normalized = squad_normalize(text)
    return text, any(normalized == squad_normalize(c) for c in example.choices)


# --------------------------------------------------------------------------- Hub


def from_hub(rows: Iterable[Mapping]) -> list[dict]:
    """Regroups one-row-per-query Hub data into passages with entity and answer offsets."""
    passages: dict[int, dict] = {}
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for r in rows:
        p, text = r["idx"]["passage"], r["passage"]
        if p not in passages:
            spans[p] = entity_spans(text, r["entity_spans"])
            mentions = [{"start": s, "end": e} for s, e, _ in spans[p]]
            passages[p] = {"passage": {"text": text, "entities": mentions}, "qas": [], "idx": p}
        qa: dict[str, Any] = {"query": r["query"], "idx": r["idx"]["query"]}
        if r["answers"]:  # empty on test: the official test qas have no answers field
            qa["answers"] = answer_mentions(text, spans[p], r["answers"])
        passages[p]["qas"].append(qa)
    return list(passages.values())


def entity_spans(text: str, hub_spans: Any) -> list[tuple[int, int, str]]:
    """Hub entity spans -> ``(start, inclusive end, text)``.

    The Hub's builder stored ``end + 1`` (exclusive); rather than trust one convention, the
    end is chosen so that ``text[start:end + 1]`` equals the span's text.
    """
    out = []
    for span in common.as_rows(hub_spans):
        start, end, entity = span["start"], span["end"], span["text"]
        if text[start:end] == entity:
            out.append((start, end - 1, entity))
        elif text[start : end + 1] == entity:
            out.append((start, end, entity))
        else:
            raise ValueError(f"Hub entity span {span} does not match the passage text {text[start : end + 1]!r}")
    return out


def answer_mentions(text: str, spans: list[tuple[int, int, str]], answers: Iterable[str]) -> list[dict]:
    """Answer texts -> every entity mention with that text (the official answers are mentions)."""
    found = []
    for answer in answers:
        mentions = [(s, e) for s, e, t in spans if t == answer] or _find_all(text, answer)
        if not mentions:
            raise ValueError(f"ReCoRD answer {answer!r} occurs nowhere in its passage")
        found += [{"start": s, "end": e, "text": answer} for s, e in mentions]
    unique = {(a["start"], a["end"]): a for a in found}
    return [unique[k] for k in sorted(unique)]


def _find_all(text: str, needle: str) -> list[tuple[int, int]]:
    out, start = [], text.find(needle)
    while needle and start >= 0:
        out.append((start, start + len(needle) - 1))
        start = text.find(needle, start + 1)
    return out


def count_units(records: list[dict]) -> int:
    """ReCoRD is scored over queries."""
    return sum(len(r["qas"]) for r in records)


SPEC = TaskSpec(
    name="record",
    folder="ReCoRD",
    version=1,
    label_words=("commonsense", "reasoning", "reading", "comprehension"),
    hub_config="record",
    metric=SquadMetric(),
    check=check,
    format=format,
    from_hub=from_hub,
    template=template,
    postprocess=postprocess,
    count_units=count_units,
    open_ended=True,
)
