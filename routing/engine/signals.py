"""Complexity signals: cheap, deterministic numbers read from an OpenAI-format chat request.

Every signal is a float; the scorer weighs them with learned weights. Only a bounded window of the
newest ask is analysed (its head and tail), so the cost stays flat however long the prompt is,
while the token estimate still sees the full length. The analysis is one pass over lines and one
over words with set lookups, because per-pattern regex scans cost too much on the hot path; fixed
substrings are counted on the window's UTF-8 bytes, which bytes.count scans far faster than str.count
scans text holding non-ASCII characters.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# Head and tail of the newest ask are analysed; instructions sit at the start or end of a paste.
ASK_HEAD_CHARS = 1500
ASK_TAIL_CHARS = 500
SYSTEM_HEAD_CHARS = 300
# Length beyond what the training benchmarks cover is tracked separately as pasted material.
ASK_TOKENS_CAP = 600
ASK_WORDS_CAP = 450
MAX_MESSAGES_SCANNED = 200
MAX_LINES_ANALYSED = 120
# An ask this long with paragraph breaks carries pasted material; its short first and last
# paragraphs are the instruction.
MATERIAL_MIN_CHARS = 1000
INSTRUCTION_MAX_CHARS = 500

SIGNAL_NAMES: tuple[str, ...] = (
    "ask_tokens",
    "ask_words",
    "material_tokens",
    "context_tokens",
    "system_tokens",
    "conversation_depth",
    "word_length",
    "long_word_share",
    "numbers",
    "math_symbols",
    "math_vocabulary",
    "code_markers",
    "code_vocabulary",
    "reasoning_vocabulary",
    "analysis_vocabulary",
    "design_vocabulary",
    "domain_vocabulary",
    "routine_task_vocabulary",
    "output_format_vocabulary",
    "constraint_vocabulary",
    "negation",
    "questions",
    "question_density",
    "asks",
    "numbered_steps",
    "multi_step_phrases",
    "sentences",
    "clauses",
    "conditionals",
    "quantity_relations",
    "named_entities",
    "references",
    "long_words",
    "tool_definitions",
    "images",
)


def _words(*forms: str) -> frozenset[str]:
    return frozenset(form for phrase in forms for form in phrase.split())


# Words are ASCII letter runs: bytes.translate + split do in C what a word regex does slowly.
_NON_LETTER_BYTES = bytes(byte for byte in range(128) if not chr(byte).isalpha())
_NON_LETTERS_TO_SPACE = bytes.maketrans(_NON_LETTER_BYTES, b" " * len(_NON_LETTER_BYTES))
# Bytes of non-ASCII characters are dropped from words, as an ASCII encoding with "ignore" would.
_NON_ASCII_BYTES = bytes(range(128, 256))
# "$" counts as LaTeX only when no amount follows: "$5" is money, not math.
_LATEX = re.compile(r"\\(?:frac|sum|int|sqrt|lim|cdot|partial|alpha|beta|theta)\b|\$(?!\s?\d)")
_MATH_CHARACTER = re.compile("[=+*/^<>≤≥≠∑∫√π∞±×÷]")
_DIGIT = re.compile(rb"[0-9]")
_LONG_WORD = re.compile(rb"[A-Za-z]{9,}")
_FULLWIDTH_QUESTION = "？".encode()
_CODE_LINE_STARTS = frozenset(
    ("def", "class", "import", "from", "return", "const", "let", "var", "public", "private", "fn", "func")
    + ("select", "#include", "async", "await")
)
_CODE_FRAGMENT_TEXTS = ("```", "()", "=>", "->", "::", "Traceback", "Exception", "Error:", "};")
_CODE_FRAGMENTS = tuple(fragment.encode() for fragment in _CODE_FRAGMENT_TEXTS)
_SENTENCE_ENDS = tuple(end.encode() for end in (". ", "? ", "! ", ".\n", "?\n", "!\n", "。", "？", "！"))
_ANSWER_CUES = frozenset({"answer:", "correct answer:", "choices:", "options:"})
_OPTION_LETTERS = frozenset("ABCDEFGHIJabcdefghij")
_STEP_BY_STEP = (b"step by step", b"step-by-step")
_SEQUENCE_STARTS = frozenset({"first", "firstly"})
_SEQUENCE_WORDS = frozenset({"then", "next", "finally", "afterwards", "subsequently", "lastly"})
_ASK_VERBS = _words(
    "write create build design implement explain describe list give make find compute calculate prove show",
    "compare analyze analyse summarize summarise translate convert extract rewrite fix debug refactor optimize",
    "optimise evaluate estimate derive suggest propose plan draft generate classify identify determine outline",
    "review solve tell add update include",
)


_MATH_WORDS = _words(
    "prove proof proofs theorem lemma corollary integral integrals derivative derivatives equation equations",
    "solve solving polynomial polynomials matrix matrices eigenvalue eigenvalues probability probabilities",
    "expected variance limit limits converge converges convergence series sum product modulo prime primes",
    "divisible factor factors function functions inequality inequalities vector vectors group groups ring",
    "field fields isomorphic homomorphism subgroup integer integers rational irrational real complex",
    "percent percentage ratio ratios rate average total remainder fraction fractions calculate compute",
    "how many much each per times twice half third quarter dozen cost costs price profit",
)
_CODE_WORDS = _words(
    "code function functions class classes method methods variable variables api endpoint endpoints bug",
    "bugs debug debugging error errors exception stack trace compile compiler runtime python javascript",
    "typescript java rust golang sql query queries database regex async thread threads concurrency race",
    "deadlock memory leak pointer refactor unit test tests repository git docker kubernetes algorithm",
    "algorithms complexity recursion recursive script library framework schema migration index",
)
_REASONING_WORDS = _words(
    "why reasoning justify justification explain explaining explanation prove proves proving derive",
    "deduce infer inference implies imply implication implications therefore hence consequently logic",
    "logical argument arguments counterexample hypothesis hypotheses assumption assumptions",
)
_ANALYSIS_WORDS = _words(
    "analyze analyse analysis analyzing analysing compare comparison contrast evaluate evaluation assess",
    "assessment critique critically tradeoff tradeoffs pros cons risk risks impact",
    "implications strategy strategic investigate diagnose root cause recommend recommendation weigh",
    "alternatives nuanced ambiguity uncertain uncertainty estimate forecast model modeling",
)
_DESIGN_WORDS = _words(
    "design architect architecture architecting system systems scalable scalability distributed",
    "tolerant consistency latency throughput migrate migration plan roadmap protocol",
    "optimize optimise optimization optimisation implement implementation invariant invariants",
    "edge",
)
_DOMAIN_WORDS = _words(
    "statute plaintiff defendant tort contract liability jurisdiction constitutional court negligence",
    "diagnosis patient clinical symptoms dose dosage syndrome pathology enzyme protein receptor",
    "molecule molecular quantum entropy thermodynamic electron photon velocity acceleration momentum",
    "equilibrium elasticity inflation monetary fiscal gdp marginal derivative securities hedging",
    "regression bayesian stochastic gradient neural transformer cryptographic theorem topology",
    "philosophy epistemology ontology utilitarian kant moral ethical",
)
# Imperatives (and the objects of "fix the typos") that open a routine request.
_ROUTINE_REQUEST_BYTES = frozenset(
    word.encode()
    for word in _words(
        "summarize summarise tldr translate extract reformat format convert rewrite rephrase paraphrase",
        "proofread spelling grammar typo typos classify categorize categorise tag label shorten condense",
        "capitalize alphabetize sort lowercase uppercase",
    )
)
_OUTPUT_FORMAT_WORDS = _words(
    "json yaml csv xml table markdown html bullet bullets list columns column fields field keys",
    "schema format template",
)
_CONSTRAINT_WORDS = _words(
    "must should need needs require requires required ensure without exactly only never always",
    "constraint constraints limit limited within least most maximum minimum budget deadline",
    "guarantee guarantees",
)
_CLAUSE_WORDS = _words("and but if then which that while after before because although whereas so")
_CONDITIONAL_WORDS = _words("if unless suppose assume assuming given when whenever otherwise provided")
_QUANTITY_RELATION_WORDS = _words(
    "more less fewer than times twice thrice double triple half third quarter fraction",
)
_REFERENCE_WORDS = _words("he she they it his her their its them him this these those former latter")
# Contractions split at the apostrophe: "isn't" is read as "isn" and "t".
_NEGATION_WORDS = _words("not no none never neither nor except unless cannot isn doesn don aren wasn won")

_VOCABULARIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("math_vocabulary", _MATH_WORDS),
    ("code_vocabulary", _CODE_WORDS),
    ("reasoning_vocabulary", _REASONING_WORDS),
    ("analysis_vocabulary", _ANALYSIS_WORDS),
    ("design_vocabulary", _DESIGN_WORDS),
    ("domain_vocabulary", _DOMAIN_WORDS),
    ("output_format_vocabulary", _OUTPUT_FORMAT_WORDS),
    ("constraint_vocabulary", _CONSTRAINT_WORDS),
    ("negation", _NEGATION_WORDS),
    ("clauses", _CLAUSE_WORDS),
    ("conditionals", _CONDITIONAL_WORDS),
    ("quantity_relations", _QUANTITY_RELATION_WORDS),
    ("references", _REFERENCE_WORDS),
    ("sequence_starts", _SEQUENCE_STARTS),
    ("sequence_words", _SEQUENCE_WORDS),
)
# Topic vocabularies saturate: the fifth math word says little more than the second.
_VOCABULARY_CAP = 2
_GRADED_VOCABULARIES = frozenset({"clauses", "conditionals", "quantity_relations", "references"})
_WORD_CATEGORIES: dict[bytes, tuple[str, ...]] = {}
for _name, _vocabulary in _VOCABULARIES:
    for _word in _vocabulary:
        _WORD_CATEGORIES[_word.encode()] = (*_WORD_CATEGORIES.get(_word.encode(), ()), _name)
# Signals that measure how much the ask says; read from the instruction when material is pasted.
_SIZE_SIGNALS = (
    "ask_words",
    "sentences",
    "clauses",
    "conditionals",
    "quantity_relations",
    "named_entities",
    "references",
    "long_words",
    "questions",
    "question_density",
)
_COUNTED_CATEGORIES = (*(name for name, _ in _VOCABULARIES), "asks")
# A routine task is one the ask opens or closes with ("Translate to Spanish: ...", "... Summarise this."):
# the same words inside an exam question ("which summary of the passage ...") are no such request.
_ROUTINE_LEAD_WORDS = 3
for _word in _ASK_VERBS:
    _WORD_CATEGORIES[_word.encode()] = (*_WORD_CATEGORIES.get(_word.encode(), ()), "asks")


def estimate_tokens(text: str) -> int:
    """About four UTF-8 bytes per token: close to BPE for English and for CJK alike."""
    if text.isascii():
        return (len(text) + 3) // 4
    return (len(text.encode("utf-8", "replace")) + 3) // 4


def _part_text(part: object) -> tuple[str, int]:
    """Text of one content part, and whether it was an image (1) or not (0)."""
    if isinstance(part, str):
        return part, 0
    if not isinstance(part, Mapping):
        return "", 0
    kind = part.get("type")
    if kind in ("image_url", "image", "input_image"):
        return "", 1
    text = part.get("text")
    if isinstance(text, str):
        return text, 0
    return "", 0


def _content_text(content: object) -> tuple[str, int]:
    """Flatten string or content-part content to text, counting images."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if isinstance(content, (list, tuple)):
        texts: list[str] = []
        images = 0
        for part in content[:MAX_MESSAGES_SCANNED]:
            text, image = _part_text(part)
            images += image
            if text:
                texts.append(text)
        return "\n".join(texts), images
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace"), 0
    return "", 0


def _ask_window(text: str) -> str:
    if len(text) <= ASK_HEAD_CHARS + ASK_TAIL_CHARS:
        return text
    return text[:ASK_HEAD_CHARS] + "\n" + text[-ASK_TAIL_CHARS:]


def _without_option_letter(line: str) -> str:
    """'A. text', 'b) text', '(C) text' -> 'text'; other lines unchanged."""
    start = 1 if line[:1] in ("(", "[") else 0
    if len(line) > start + 2 and line[start] in _OPTION_LETTERS and line[start + 1] in ".):]":
        rest = line[start + 2 :]
        if rest[:1] in (" ", "\t"):
            return rest.lstrip()
    return line


def _is_numbered_step(line: str) -> bool:
    if line[:2] in ("- ", "* ", "• "):
        return True
    if line[:1].isdigit():
        head = line[:3]
        return "." in head or ")" in head
    return line[:5].lower() == "step " and line[5:6].isdigit()


def _is_code_line(line: str) -> bool:
    first_word = line.split(None, 1)[0].lower() if line else ""
    return first_word in _CODE_LINE_STARTS or line.endswith((";", "{", "}"))


def _analysed_lines(window: str) -> tuple[str, int, int]:
    """The window without exam scaffolding, with counts of numbered-step and code lines."""
    kept: list[str] = []
    numbered_steps = 0
    code_lines = 0
    lines = window.split("\n")
    for position, raw_line in enumerate(lines):
        if position >= MAX_LINES_ANALYSED:
            kept.extend(lines[position:])
            break
        line = raw_line.strip()
        if not line or line.lower() in _ANSWER_CUES:
            continue
        line = _without_option_letter(line)
        if _is_numbered_step(line):
            numbered_steps += 1
        elif _is_code_line(line):
            code_lines += 1
        kept.append(line)
    return "\n".join(kept), numbered_steps, code_lines


def neutralise_exam_artefacts(text: str) -> str:
    """Drop multiple-choice scaffolding ("A. …", "(B) …", a closing "Answer:") so it never counts."""
    return _analysed_lines(text)[0]


def _log(count: float) -> float:
    return math.log1p(max(count, 0.0))


def _tool_count(tools: object) -> int:
    if isinstance(tools, (list, tuple)):
        return len(tools)
    return 0


def _conversation(messages: object) -> list[tuple[str, str, int]]:
    """(role, text, images) per turn, newest last, whatever shape the request came in."""
    if isinstance(messages, (str, bytes)):
        messages = [{"role": "user", "content": messages}]
    elif isinstance(messages, Mapping):
        messages = [messages]
    elif not isinstance(messages, Iterable):
        return []
    turns = []
    for message in list(messages)[-MAX_MESSAGES_SCANNED:]:
        if isinstance(message, str):
            turns.append(("user", message, 0))
        elif isinstance(message, Mapping):
            role = message.get("role")
            text, images = _content_text(message.get("content"))
            turns.append((role if isinstance(role, str) else "user", text, images))
    return turns


def _routine_requests(lowered: bytes) -> int:
    """Routine-task words among the first words of the first and the last line."""
    first_break = lowered.find(b"\n")
    lines = [lowered if first_break < 0 else lowered[:first_break]]
    if first_break >= 0:
        lines.append(lowered[lowered.rfind(b"\n") + 1 :])
    return sum(
        word in _ROUTINE_REQUEST_BYTES
        for line in lines
        for word in line.translate(_NON_LETTERS_TO_SPACE, _NON_ASCII_BYTES).split(None, _ROUTINE_LEAD_WORDS)[
            :_ROUTINE_LEAD_WORDS
        ]
    )


def _text_signals(window: str, system_window: str) -> dict[str, float]:
    """Signals read from the analysed window of the ask (and the head of the system prompt)."""
    cleaned, numbered_steps, code_lines = _analysed_lines(window)
    # Counting runs on the UTF-8 bytes: a substring's count is the same, and bytes.count is much
    # faster than str.count on text with non-ASCII characters. ASCII phrases need only ASCII lowering.
    encoded = cleaned.encode("utf-8", "surrogatepass")
    lowered = encoded.lower()
    letters_only = encoded.translate(_NON_LETTERS_TO_SPACE, _NON_ASCII_BYTES)
    words = letters_only.split()
    # Per-word work stays in C (map, filter, Counter); only distinct vocabulary hits reach Python code.
    letters = len(letters_only) - letters_only.count(b" ")
    long_words = len(_LONG_WORD.findall(letters_only))
    capitalised = sum(map(bytes.istitle, words))
    category_counts = dict.fromkeys(_COUNTED_CATEGORIES, 0)
    for word, hits in Counter(filter(_WORD_CATEGORIES.__contains__, letters_only.lower().split())).items():
        for category in _WORD_CATEGORIES[word]:
            category_counts[category] += hits
    # Phrases that letter-run words split apart.
    routine_requests = lowered.count(b"tl;dr") + _routine_requests(lowered)
    category_counts["analysis_vocabulary"] += lowered.count(b"trade-off")
    sequence_starts = category_counts.pop("sequence_starts")
    sequence_words = category_counts.pop("sequence_words")
    multi_step = sum(map(lowered.count, _STEP_BY_STEP)) + min(sequence_starts, sequence_words)

    math_symbols = _MATH_CHARACTER.search(cleaned) is not None or (
        (b"\\" in encoded or b"$" in encoded) and _LATEX.search(cleaned) is not None
    )
    has_code = code_lines > 0 or any(fragment in encoded for fragment in _CODE_FRAGMENTS)
    if system_window and not has_code:
        has_code = any(fragment in system_window for fragment in _CODE_FRAGMENT_TEXTS)
    word_count = len(words)
    sentences = sum(map(encoded.count, _SENTENCE_ENDS)) + (1 if encoded.rstrip()[-1:] in b".?!" else 0)
    sentences = sentences or (1 if encoded.strip() else 0)
    questions = encoded.count(b"?") + encoded.count(_FULLWIDTH_QUESTION)

    signals = {
        "routine_task_vocabulary": _log(min(routine_requests, _VOCABULARY_CAP)),
        "ask_words": _log(min(word_count, ASK_WORDS_CAP)),
        "word_length": (letters / word_count) if word_count else 0.0,
        "long_word_share": (long_words / word_count) if word_count else 0.0,
        "numbers": _log(1 if _DIGIT.search(encoded) is not None else 0),
        "math_symbols": _log(1 if math_symbols else 0),
        "code_markers": _log(1 if has_code else 0),
        "questions": _log(questions),
        "question_density": min(questions / sentences, 3.0) if sentences else 0.0,
        "numbered_steps": _log(numbered_steps),
        "multi_step_phrases": _log(multi_step),
        "sentences": _log(sentences),
        "named_entities": _log(capitalised),
        "long_words": _log(long_words),
        "clauses": _log(
            category_counts.pop("clauses") + encoded.count(b",") + encoded.count(b";") + encoded.count(b":")
        ),
        "asks": _log(category_counts.pop("asks") + questions),
    }
    for name, count in category_counts.items():
        signals[name] = _log(count if name in _GRADED_VOCABULARIES else min(count, _VOCABULARY_CAP))
    return signals


def instruction_part(ask: str) -> str | None:
    """The instruction around pasted material (first and last short paragraphs), or None if nothing is pasted."""
    if len(ask) < MATERIAL_MIN_CHARS:
        return None
    head_break = ask.find("\n\n")
    tail_break = ask.rfind("\n\n")
    if head_break < 0:
        return None
    head = ask[:head_break]
    tail = ask[tail_break + 2 :]
    kept = [part for part in (head, tail) if len(part.strip()) <= INSTRUCTION_MAX_CHARS]
    if not kept:
        # Material with no short paragraph to hold the ask: its opening stands in for the instruction.
        return ask[:INSTRUCTION_MAX_CHARS]
    return "\n\n".join(kept)


def extract_signals(messages: object, tools: object = None) -> dict[str, float]:
    """Signals for one chat request; never raises on well-typed or odd input."""
    return extract_features(messages, tools)[0]


def extract_features(messages: object, tools: object = None) -> tuple[dict[str, float], str]:
    """The signals for one chat request, and the analysed window of its newest ask."""
    turns = _conversation(messages)
    last_user = max((i for i, (role, _, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None:
        # No user turn: the newest non-system text is the ask.
        last_user = max(
            (i for i, (role, _, _) in enumerate(turns) if role not in ("system", "developer")), default=None
        )
    ask = ""
    system_parts: list[str] = []
    context_tokens = system_tokens = user_turns = images = 0
    for position, (role, text, image_count) in enumerate(turns):
        images += image_count
        if role in ("system", "developer"):
            system_tokens += estimate_tokens(text)
            system_parts.append(text[:SYSTEM_HEAD_CHARS])
            continue
        if position == last_user:
            ask = text
        else:
            context_tokens += estimate_tokens(text)
        if role == "user":
            user_turns += 1

    ask_tokens = estimate_tokens(ask)
    signals = _text_signals(_ask_window(ask), "\n".join(system_parts))
    instruction = instruction_part(ask)
    if instruction is None:
        instruction_tokens = ask_tokens
        material_tokens = ask_tokens - ASK_TOKENS_CAP
    else:
        # A pasted document's size says how much to read, not how hard the ask is.
        instruction_signals = _text_signals(instruction, "")
        signals.update({name: instruction_signals[name] for name in _SIZE_SIGNALS})
        instruction_tokens = estimate_tokens(instruction)
        material_tokens = ask_tokens - instruction_tokens
    signals.update(
        {
            "ask_tokens": _log(min(instruction_tokens, ASK_TOKENS_CAP)),
            "material_tokens": _log(material_tokens),
            "context_tokens": _log(context_tokens),
            "system_tokens": _log(system_tokens),
            "conversation_depth": _log(max(user_turns - 1, 0)),
            "tool_definitions": _log(_tool_count(tools)),
            "images": _log(images),
        }
    )
    return {name: float(signals[name]) for name in SIGNAL_NAMES}, _ask_window(ask)


def request_text(messages: object) -> str:
    """All non-system text of a request, for baselines that take one string (prompt length)."""
    return "\n".join(text for role, text, _ in _conversation(messages) if role not in ("system", "developer"))


def last_user_text(messages: Any) -> str:
    """Text of the newest user turn, as LiteLLM's router reads it."""
    for role, text, _ in reversed(_conversation(messages)):
        if role == "user":
            return text
    return ""


# ---------------------------------------------------------------------------------------------
# Task type and ask terms (read by weights format 2; format 1 never computes them)

# The kind of task decides more than its size: reshaping stated text rarely needs the frontier
# model, reasoning about it often does. Lead words are the first words of the ask (its verb).
TASK_LEAD_WORDS = 4
TASK_SIGNAL_NAMES: tuple[str, ...] = (
    "transform_task",
    "extract_task",
    "classify_task",
    "compose_task",
    "lookup_question",
    "snippet_question",
    "reason_task",
    "design_task",
    "debug_task",
    "prove_task",
    "quantitative_task",
    "consistency_task",
)
_TASK_LEAD_VOCABULARIES: dict[str, frozenset[str]] = {
    "transform_task": _words(
        "translate traduce convert reformat format rewrite rephrase paraphrase shorten condense proofread",
        "correct fix capitalize alphabetize sort make turn put change summarise summarize tldr tl dr",
    ),
    "extract_task": _words("extract pull list find grab which count get"),
    "classify_task": _words(
        "classify categorise categorize tag label detect rate sentiment is does priority"
    ),
    "compose_task": _words(
        "write draft reply respond suggest give generate come compose create describe thank",
    ),
    "lookup_question": _words("what who when where how many"),
}
_TASK_VOCABULARIES: dict[str, frozenset[str]] = {
    "snippet_question": _words("line snippet command oneliner liner"),
    "reason_task": _words(
        "why reason reasoning justify explain derive deduce infer prove show hypothesis hypotheses",
        "implications assess critically evaluate weigh tradeoffs tradeoff consequences causal cause",
    ),
    "design_task": _words(
        "design architect architecture scale scalable distributed sharding shard replicas failover",
        "consistency partition throughput multi tenant region regions guarantee guarantees exactly",
    ),
    "debug_task": _words(
        "debug bug bugs leak leaks deadlock deadlocks race flaky hangs hang crash crashes intermittent",
        "sometimes occasionally garbage overflow wrong root incident traceback stale duplicate twice",
    ),
    "prove_task": _words(
        "prove proof show theorem lemma induction contradiction counterexample irrational divisible",
        "bound invariant correctness",
    ),
    "quantitative_task": _words(
        "probability expected odds chance random dice coin cards uniformly independent significant",
        "estimate compute calculate interest rate percent variance distribution fraction average",
    ),
    "consistency_task": _words(
        "consistent inconsistent inconsistency inconsistencies reconcile discrepancy discrepancies",
        "contradiction contradictions contradict disagree agree audit check verify add up adds",
    ),
}


def _letter_words(window: str) -> list[str]:
    cleaned = _analysed_lines(window)[0]
    return (
        cleaned.encode("utf-8", "surrogatepass")
        .translate(_NON_LETTERS_TO_SPACE, _NON_ASCII_BYTES)
        .lower()
        .decode()
        .split()
    )


def task_type_signals(window: str) -> dict[str, float]:
    """How strongly the ask reads as each task type: lead-verb types from the first words, the rest anywhere."""
    return _task_type_signals_of(_letter_words(window))


def _task_type_signals_of(words: list[str]) -> dict[str, float]:
    lead = words[:TASK_LEAD_WORDS]
    present = set(words)
    signals = {
        name: float(any(word in vocabulary for word in lead))
        for name, vocabulary in _TASK_LEAD_VOCABULARIES.items()
    }
    for name, vocabulary in _TASK_VOCABULARIES.items():
        signals[name] = _log(min(len(present & vocabulary), _VOCABULARY_CAP))
    return signals


def ask_terms(window: str) -> set[str]:
    """Distinct words, word pairs ("a b") and lead words ("^a") of the analysed ask window."""
    return _ask_terms_of(_letter_words(window))


def task_type_signals_and_terms(window: str, *, with_terms: bool) -> tuple[dict[str, float], set[str]]:
    """Both of the above from one pass over the window's words (the terms only when asked for)."""
    words = _letter_words(window)
    return _task_type_signals_of(words), _ask_terms_of(words) if with_terms else set()


def _ask_terms_of(words: list[str]) -> set[str]:
    terms = set(words)
    terms.update(map(" ".join, zip(words, words[1:], strict=False)))
    terms.update("^" + word for word in words[:TASK_LEAD_WORDS])
    return terms
