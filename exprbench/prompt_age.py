"""The age a prompt asked for (subjects.csv `age` or `age_group`) as a range of years.

Accepted forms (case and surrounding spaces ignored), each read as a half-open range
[low, high) of ages in years, so that an integer age written by a person covers its whole
year (34 means 34.0 <= age < 35.0):

* an age: ``34`` -> [34, 35)
* a range of ages, both ends included: ``30-40``, ``30–40``, ``30 to 40`` -> [30, 41)
* a decade: ``20s``, ``20's`` -> [20, 30); ``early 30s`` -> [30, 34), ``mid 30s``
  -> [33, 37), ``late 30s`` -> [36, 40)
* open ends: ``30+``, ``over 30``, ``30 and over`` -> [30, 120]; ``under 18`` -> [0, 18)
* a group, by this convention: baby/infant [0, 3), child [3, 13), teen/teenager
  [13, 20), young adult [18, 30), adult [18, 65), middle-aged [40, 65),
  senior/elderly/old [65, 120]

Anything else raises `AgeFormError` naming the value and the accepted forms; ingest flags
such a subject and the age-against-prompt measures stay empty for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_AGE = 120.0

ACCEPTED_FORMS = (
    "an age (34), a range (30-40, 30 to 40), a decade (20s, early/mid/late 30s), "
    "an open end (30+, over 30, under 18) or a group (baby, child, teen, young adult, "
    "adult, middle-aged, senior, elderly)"
)

_GROUPS: dict[str, tuple[float, float]] = {
    "baby": (0, 3),
    "infant": (0, 3),
    "child": (3, 13),
    "kid": (3, 13),
    "teen": (13, 20),
    "teenager": (13, 20),
    "young adult": (18, 30),
    "adult": (18, 65),
    "middle aged": (40, 65),
    "senior": (65, MAX_AGE),
    "elderly": (65, MAX_AGE),
    "old": (65, MAX_AGE),
}
_DECADE_PART = {"early": (0, 4), "mid": (3, 7), "late": (6, 10)}


class AgeFormError(ValueError):
    """A requested age that is not one of the accepted forms."""


@dataclass(frozen=True)
class AgeRange:
    """Requested ages [low, high), in years; `high` == MAX_AGE is an open upper end."""

    low: float
    high: float
    text: str

    def error(self, age: float) -> float:
        """Years outside the range: 0 inside, negative below (younger), positive above."""
        if age < self.low:
            return age - self.low
        if age >= self.high and self.high < MAX_AGE:
            return age - self.high
        return 0.0

    def contains(self, age: float) -> bool:
        return self.error(age) == 0.0


def _checked(low: float, high: float, text: str) -> AgeRange:
    if not 0 <= low < high <= MAX_AGE:
        raise AgeFormError(
            f"requested age {text!r}: the range [{low:g}, {high:g}) is empty or outside "
            f"0-{MAX_AGE:g} years"
        )
    return AgeRange(low, high, text)


def parse_requested_age(text: str) -> AgeRange:
    """The range a subjects.csv age or age group stands for (see the module docstring)."""
    value = " ".join(str(text).strip().lower().replace("–", "-").replace("—", "-").split())
    value = value.replace("middle-aged", "middle aged").replace("young-adult", "young adult")
    if value in _GROUPS:
        return _checked(*_GROUPS[value], text)
    if match := re.fullmatch(r"(\d{1,3})", value):
        age = float(match[1])
        return _checked(age, age + 1, text)
    if match := re.fullmatch(r"(\d{1,3}) ?(?:-|to) ?(\d{1,3})", value):
        low, high = float(match[1]), float(match[2])
        if low > high:
            raise AgeFormError(f"requested age {text!r}: {low:g} is above {high:g}")
        return _checked(low, high + 1, text)
    if match := re.fullmatch(r"(?:(early|mid|late)[ -]?)?(\d0)'?s", value):
        decade = float(match[2])
        start, end = _DECADE_PART.get(match[1] or "", (0, 10))
        return _checked(decade + start, decade + end, text)
    if match := re.fullmatch(
        r"(?:(\d{1,3}) ?\+|over (\d{1,3})|(\d{1,3}) and (?:over|older))", value
    ):
        low = float(next(g for g in match.groups() if g is not None))
        return _checked(low, MAX_AGE, text)
    if match := re.fullmatch(r"under (\d{1,3})", value):
        return _checked(0.0, float(match[1]), text)
    raise AgeFormError(f"requested age {text!r} not understood; accepted: {ACCEPTED_FORMS}")
