"""Request validation as AWS applies it: botocore's checks plus the service-model constraints botocore skips.

botocore's ``ParamValidator`` checks member names, required members, types, string/list minimum length and
numeric minimum. AWS also rejects a value over its ``max`` length/value, outside its ``enum`` or not matching
its ``pattern`` (a Java regular expression, matched against the whole value). ``check_request`` reports both,
the extra ones in the wording AWS uses::

    Value 'x' at 'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum value set: [...]

``validation_message`` joins them the way AWS does (``N validation error(s) detected: ...; ...``).

``check_exact_member_names`` is Step Functions' own rule for ``aws-sdk`` tasks: the parameters use the API's
member names exactly (PascalCase, case-sensitive); it reports every name the input shape does not have.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StringShape, StructureShape
from botocore.validate import ParamValidator

# Java patterns that cannot be expressed in Python ``re`` (pattern -> reason); they are skipped, not guessed.
# Every pattern of the six services this project calls (sagemaker, cloudwatch, s3, sns, application-autoscaling,
# lambda) translates today (tests/unit/test_aws_conformance.py::test_every_pattern_of_the_project_services_compiles);
# a new untranslatable one makes that test fail until it is listed here with its reason.
UNTRANSLATABLE_PATTERNS: dict[str, str] = {}

# Java POSIX classes (US-ASCII unless UNICODE_CHARACTER_CLASS, which AWS patterns do not set).
_POSIX = {
    "Alnum": "a-zA-Z0-9",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Upper": "A-Z",
    "Lower": "a-z",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "Graph": "\\x21-\\x7e",
    "Print": "\\x20-\\x7e",
    "ASCII": "\\x00-\\x7f",
    "Space": " \\t\\n\\x0b\\f\\r",
    "XDigit": "0-9a-fA-F",
}
# A UTF-16 surrogate pair range in a Java pattern: every supplementary code point.
_SURROGATE_RANGE = re.compile(r"\\uD800\\uDC00-\\uDBFF\\uDFFF", re.IGNORECASE)
# ``$`` with a quantifier (``(...)${1,128}``): Java repeats the zero-width anchor; once is the same.
_QUANTIFIED_END = re.compile(r"\$\{\d+(,\d*)?\}")


@functools.cache
def _code_point_categories() -> dict[str, list[tuple[int, int]]]:
    """Every code point's general category, as ranges per two-letter category (one pass, cached)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for code in range(sys.maxunicode + 1):
        spans = ranges.setdefault(unicodedata.category(chr(code)), [])
        if spans and spans[-1][1] == code - 1:
            spans[-1] = (spans[-1][0], code)
        else:
            spans.append((code, code))
    return ranges


@functools.cache
def _category_ranges(category: str) -> str:
    """A character-class body for a Unicode general category (``L``) or subcategory (``Zs``)."""
    spans = sorted(
        span for name, found in _code_point_categories().items() if name.startswith(category) for span in found
    )
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in spans)


def _property_body(name: str) -> str:
    if name in _POSIX:
        return _POSIX[name]
    if re.fullmatch(r"[LMNPSZC][a-z]?", name):
        return _category_ranges(name)
    raise ValueError(f"unsupported Java character property \\p{{{name}}}")


def translate_java_pattern(pattern: str) -> str:  # noqa: PLR0912 - one branch per Java construct
    """The Python ``re`` equivalent of a service-model (Java) pattern; ValueError if there is none."""
    if pattern in UNTRANSLATABLE_PATTERNS:
        raise ValueError(UNTRANSLATABLE_PATTERNS[pattern])
    text = _SURROGATE_RANGE.sub(lambda _: "\\U00010000-\\U0010ffff", pattern)
    text = _QUANTIFIED_END.sub("$", text)
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "pP" and i + 2 < len(text) and text[i + 2] == "{":
                end = text.index("}", i)
                if nxt == "P":
                    raise ValueError(f"negated property {text[i : end + 1]} is not translated")
                body = _property_body(text[i + 3 : end])
                out.append(body if in_class else f"[{body}]")
                i = end + 1
                continue
            if nxt in "QEzZGhHvVRX":
                raise ValueError(f"Java escape \\{nxt} has no Python equivalent here")
            out.append(text[i : i + 2])
            i += 2
            continue
        if in_class and char == "[":
            raise ValueError("nested character class (Java union) is not translated")
        if in_class and text.startswith("&&", i):
            raise ValueError("character class intersection (&&) is not translated")
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            if text.startswith("^", i + 1):
                out.append("^")
                i += 1
            if text.startswith("]", i + 1):  # a leading ] is literal in both dialects
                out.append("\\]")
                i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    translated = "".join(out)
    re.compile(translated, re.ASCII)
    return translated


@functools.cache
def compiled_pattern(pattern: str) -> re.Pattern[str] | None:
    """The compiled translation of a model pattern, or None where it is listed as untranslatable."""
    if pattern in UNTRANSLATABLE_PATTERNS:
        return None
    return re.compile(translate_java_pattern(pattern), re.ASCII)


def _path(parent: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _constraint(errors: list[str], value: Any, path: str, rule: str) -> None:
    errors.append(f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: {rule}")


def _check_constraints(value: Any, shape: Shape, path: str, errors: list[str]) -> None:  # noqa: PLR0912 - one branch per type
    """The constraints botocore does not check (max length/value, enum, pattern), recursively; wrong types are left
    to botocore's report."""
    if value is None:
        return
    meta = shape.metadata
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        if isinstance(value, Mapping):
            for key, item in value.items():
                if key in shape.members:
                    _check_constraints(item, shape.members[key], _path(path, key), errors)
        return
    if isinstance(shape, ListShape):
        if isinstance(value, list | tuple):
            if "max" in meta and len(value) > meta["max"]:
                _constraint(errors, value, path, f"Member must have length less than or equal to {meta['max']}")
            for index, item in enumerate(value, start=1):
                _check_constraints(item, shape.member, f"{path}.{index}.member", errors)
        return
    if isinstance(shape, MapShape):
        if isinstance(value, Mapping):
            if "max" in meta and len(value) > meta["max"]:
                _constraint(errors, value, path, f"Member must have length less than or equal to {meta['max']}")
            for key, item in value.items():
                _check_constraints(key, shape.key, f"{path}.key", errors)
                _check_constraints(item, shape.value, f"{path}.{key}", errors)
        return
    if kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            _constraint(errors, value, path, f"Member must have length less than or equal to {meta['max']}")
        enum = shape.enum if isinstance(shape, StringShape) else []
        if enum and value not in enum:
            _constraint(errors, value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = meta.get("pattern")
        if pattern:
            regex = compiled_pattern(pattern)
            if regex is not None and not regex.fullmatch(value):
                _constraint(errors, value, path, f"Member must satisfy regular expression pattern: {pattern}")
        return
    if (
        kind in {"integer", "long", "float", "double"}
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if "max" in meta and value > meta["max"]:
            _constraint(errors, value, path, f"Member must have value less than or equal to {meta['max']}")
        return
    if kind == "blob" and isinstance(value, bytes | bytearray | str):
        size = len(value.encode() if isinstance(value, str) else value)
        if "max" in meta and size > meta["max"]:
            _constraint(errors, value, path, f"Member must have length less than or equal to {meta['max']}")


def _input_shape(service_model: ServiceModel, operation_name: str) -> tuple[OperationModel, StructureShape | None]:
    operation = service_model.operation_model(operation_name)
    return operation, operation.input_shape


def check_request(service_model: ServiceModel, operation_name: str, params: Mapping[str, Any]) -> list[str]:
    """Every reason AWS would reject ``params`` for ``operation_name`` (empty: a valid request).

    botocore's report lines first (names, required members, types, minimums), then one AWS-worded line per
    max length/value, enum or pattern violation.
    """
    _, shape = _input_shape(service_model, operation_name)
    if shape is None:
        return [f"Unknown parameter {name}" for name in params]
    report = ParamValidator().validate(dict(params), shape)
    errors = report.generate_report().splitlines() if report.has_errors() else []
    _check_constraints(params, shape, "", errors)
    return errors


def validation_message(errors: list[str]) -> str:
    """The ValidationException message AWS returns for these constraint failures."""
    count = len(errors)
    noun = "validation error" if count == 1 else "validation errors"
    return f"{count} {noun} detected: {'; '.join(errors)}"


def _exact_names(value: Any, shape: Shape, path: str, errors: list[str]) -> None:
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}/{key}" if path else f"/{key}"
            if key not in shape.members:
                errors.append(f'The field "{key}" is not supported by Step Functions (at {where})')
            else:
                _exact_names(item, shape.members[key], where, errors)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for index, item in enumerate(value):
            _exact_names(item, shape.member, f"{path}[{index}]", errors)
    elif isinstance(shape, MapShape) and isinstance(value, Mapping):
        for key, item in value.items():
            _exact_names(item, shape.value, f"{path}/{key}", errors)


def check_exact_member_names(service_model: ServiceModel, operation_name: str, params: Mapping[str, Any]) -> list[str]:
    """Names in ``params`` (an aws-sdk task's Parameters after JSONPath resolution) that are not, exactly and
    case-sensitively, members of the operation's input shape (map keys are data, not member names)."""
    _, shape = _input_shape(service_model, operation_name)
    errors: list[str] = []
    if shape is None:
        return [f'The field "{key}" is not supported by Step Functions (at /{key})' for key in params]
    _exact_names(params, shape, "", errors)
    return errors
