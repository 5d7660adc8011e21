"""WSC (Levesque et al. 2012, SuperGLUE's version): which noun phrase does a pronoun refer to?

T5 (Raffel et al. 2020) trains WSC as generation: the input is the sentence with the pronoun
marked (``wsc_simple``), the target is the referent's text (span1), and only true pairs are
trained on. Its data is TFDS's ``super_glue/wsc.fixed``, whose span texts are corrected against
the sentence; ``fix_spans`` applies the same corrections (a no-op on already fixed data, such
as the Hub's ``wsc.fixed``), so the official release gives T5's targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import ReferentMetric
from promptscale.data.tasks.spec import TaskSpec

_SPAN_KEYS = ("span1_index", "span2_index", "span1_text", "span2_text")

# TFDS leaves these two span texts alone: the named people are not contiguous in the sentence.
_UNFIXABLE = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")

# T5's `_wsc_inputs` special-cases two training texts (records 137, 453 and 533 of the official
# train split) whose pronoun is glued to punctuation or mis-indexed: text -> T5's blanked text.
_PONY = (
    "The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "
    '"Good for him," he said. '
)
_PEBBLE = (
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an iron "
    "safe . Some day they might want to use it , but really for now, what more could they wish for?"
)
_T5_BLANKED = {
    _PONY: _PONY.replace('"Good for him," he said. ', '"Good for X ," he said.'),
    _PEBBLE: _PEBBLE.replace(" use it , ", " use X , "),
}
_TRAILING_PUNCT = ".,!?;:\"')"


def check(record: dict, split: str) -> None:
    """Official schema: ``text``, ``target: {span1/2_index, span1/2_text}``, ``idx``, boolean label.

    Span indices are word positions in ``text.split()``.
    """
    words = schema.text(record, "text").split()
    target = schema.get(record, "target", dict)
    for n in ("1", "2"):
        index = schema.get(target, f"span{n}_index", int, "target.")
        schema.text(target, f"span{n}_text", "target.")
        if not 0 <= index < len(words):
            raise schema.FieldError(f"target.span{n}_index", f"{index} outside text.split() of {len(words)} words")
    schema.get(record, "idx", int)
    schema.label(record, split, schema.BOOL)


# --------------------------------------------------------------------------- spans and marking


def fix_spans(record: dict) -> dict:
    """TFDS ``wsc.fixed``'s corrections of span texts that are not substrings of the text.

    For each span whose text does not occur in ``text``: the two Kamenev/Zinoviev spans stay
    as they are; a span text containing "theyscold" moves ``span2_index`` to 10 (TFDS also
    means to replace "theyscold" in the text, but its replacement is discarded, so the text
    stays); the first character takes the case of the word at the span's index in
    ``text.split()``; trailing "." are stripped; newlines become spaces. Spans found in the
    text are left alone, so fixing twice changes nothing more.

    Returns:
        A new record (the input is not modified).
    """
    text, target = record["text"], dict(record["target"])
    for k in ("span1", "span2"):
        span_text, index = target[f"{k}_text"], target[f"{k}_index"]
        if span_text in text or span_text in _UNFIXABLE:
            continue
        if "theyscold" in span_text:
            target["span2_index"] = 10
        words = text.split()
        word = words[index] if 0 <= index < len(words) else ""
        first = span_text[:1].lower() if word[:1].islower() else span_text[:1].upper()
        target[f"{k}_text"] = (first + span_text[1:]).rstrip(".").replace("\n", " ")
    return {**record, "target": target}


def t5_blank(text: str, index: int, pronoun: str) -> str | None:
    """T5's ``_wsc_inputs``: the text with the pronoun replaced by ``X``, or None where T5 fails.

    The text is split on single spaces; word ``index`` must be ``pronoun`` and neither the
    first word nor past the end (T5 asserts both), except for T5's two special-cased texts.
    """
    if text in _T5_BLANKED:
        return _T5_BLANKED[text]
    words = text.split(" ")
    if not 0 < index < len(words) or words[index] != pronoun:
        return None
    return " ".join([" ".join(words[:index]), "X", " ".join(words[index + 1 :])])


def _span_at(words: list[str], index: int, span_text: str) -> str | None:
    """Returns the punctuation glued after ``span_text`` if it starts at word ``index``, else None."""
    n = len(span_text.split())
    if index < 0 or index + n > len(words):
        return None
    span = " ".join(words[index : index + n])
    if not span.lower().startswith(span_text.lower()):
        return None
    tail = span[len(span_text) :]
    return None if tail.strip(_TRAILING_PUNCT) else tail


def _mark_leniently(text: str, index: int, pronoun: str) -> str:
    """Wraps the word(s) at or nearest to ``index`` that spell ``pronoun`` in asterisks.

    Punctuation glued to the pronoun ("him,") stays outside the asterisks ("*him*,"), a
    multi-word pronoun replaces as many words, and an index that is off falls back to the
    nearest occurrence.

    Raises:
        ValueError: If ``pronoun`` occurs nowhere in ``text.split()``.
    """
    words = text.split()
    for j in sorted(range(len(words)), key=lambda j: (abs(j - index), j)):
        tail = _span_at(words, j, pronoun)
        if tail is not None:
            n = len(pronoun.split())
            return " ".join([*words[:j], f"*{pronoun}*{tail}", *words[j + n :]])
    raise ValueError(f"WSC span2 {pronoun!r} (word {index}) not found in {text!r}")


def mark_pronoun(record: dict) -> str:
    """The text with the pronoun marked as ``*pronoun*``, as T5's ``wsc_simple`` builds it.

    T5 blanks the pronoun (``t5_blank``) and then replaces every " X " by " *{span2_text}* ".
    Where T5 would reject the record (the word at ``span2_index`` is not ``span2_text`` even
    after ``fix_spans``), the pronoun is marked leniently instead (``_mark_leniently``), so
    no record of a user's data is lost; T5 itself could not have trained on such a record.

    Args:
        record: A record after ``fix_spans``.
    """
    target = record["target"]
    index, pronoun = int(target["span2_index"]), target["span2_text"]
    blanked = t5_blank(record["text"], index, pronoun)
    if blanked is None:
        return _mark_leniently(record["text"], index, pronoun)
    return blanked.replace(" X ", f" *{pronoun}* ")


# --------------------------------------------------------------------------- examples


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``wsc: {text with *pronoun*}`` -> the referent text (span1), as T5's ``wsc_simple``.

    The model generates the referent; a prediction is scored True when it names span1
    (``scoring.wsc_referent_match``) and then compared with the label. Only true pairs make
    sense as training targets, so training drops records whose label is not true (T5,
    ``correct_referent_only``).
    """
    label = common.bool_label(record)
    if train and label != 1:
        return []
    fixed = fix_spans(record)
    marked = mark_pronoun(fixed)
    referent = fixed["target"]["span1_text"]
    inputs = f"wsc: {marked}" if prefix else marked
    idx = str(record["idx"])
    return [Example("wsc", inputs, referent, (), label, idx, (referent,), idx)]


def template(record: dict) -> list[Example]:
    """The text with the pronoun marked, then whether it refers to span1 -> no / yes.

    Unlike T5's generated referent, the answer is the record's own truth label, so every
    record (true or false) is scored, and the predicted index is the 0/1 decision the WSC
    metric compares with the label.
    """
    fixed = fix_spans(record)
    target = fixed["target"]
    inputs = (
        f'{mark_pronoun(fixed)}\nQuestion: In the passage above, does the pronoun "*{target["span2_text"]}*" '
        f"refer to {target['span1_text']}?\nAnswer:"
    )
    label = common.bool_label(record)
    idx = str(record["idx"])
    targets = common.NO_YES[label] if label >= 0 else ""
    return [Example("wsc", inputs, targets, common.NO_YES, label, idx, (target["span1_text"],), idx)]


def postprocess(text: str, example: Example) -> tuple[int | str, bool]:
    """T5-format WSC: the text itself; the prompt-design template (no/yes choices): a label.

    The text is scored by T5's referent match, which has no notion of an invalid answer.
    Ours: the text is valid iff, lower-cased and whitespace-collapsed, it is non-empty and
    occurs in the example's (lower-cased) input sentence, i.e. it is a phrase copied from the
    sentence, as a referent must be.
    """
    if example.choices:
        return common.label_postprocess(text, example)
    phrase = " ".join(text.lower().split())
    sentence = " ".join(example.inputs.lower().split())
    return text, bool(phrase) and phrase in sentence


def from_hub(rows: Iterable[Mapping]) -> list[dict]:
    """Hub ``wsc.fixed`` rows (flat span fields) -> official records (spans under ``target``)."""
    return [
        common.labelled(
            {"text": r["text"], "target": {k: r[k] for k in _SPAN_KEYS}, "idx": r["idx"]},
            common.hub_label(r, schema.BOOL),
        )
        for r in rows
    ]


SPEC = TaskSpec(
    name="wsc",
    folder="WSC",
    version=2,  # 2: TFDS wsc.fixed span corrections and T5's exact wsc_simple marking
    label_words=("commonsense", "pronoun", "resolution"),
    hub_config="wsc.fixed",
    metric=ReferentMetric(("accuracy",)),
    check=check,
    format=format,
    from_hub=from_hub,
    template=template,
    postprocess=postprocess,
    open_ended=True,
)
