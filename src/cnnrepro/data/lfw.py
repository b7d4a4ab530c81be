"""Labeled Faces in the Wild (Huang et al. 2007): the protocol files that define its folds and pairs.

`pairs.txt` (View 2) starts with `<folds>\t<pairs per class>`, then each fold lists that many matched pairs
(`name n1 n2`) followed by as many mismatched pairs (`name1 n1 name2 n2`). The View 1 files `pairsDevTrain.txt`
and `pairsDevTest.txt` start with one number N, then N matched and N mismatched pairs. `people.txt` starts with
the number of sets, then each set is a count followed by `name images` lines; `peopleDev*.txt` is one such set
without the leading set count. Image numbers in these files are not zero-padded, in file names they are padded
to four digits.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cnnrepro import atomic
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

PAIRS_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt")
PEOPLE_FILES = ("people.txt", "peopleDevTrain.txt", "peopleDevTest.txt")


@dataclass(frozen=True)
class Pair:
    """One verification pair; `fold` is the 0-based fold index, `same` is true for a matched pair."""

    name1: str
    n1: int
    name2: str
    n2: int
    same: bool
    fold: int


def image_relpath(name: str, number: int, ext: str = ".jpg") -> str:
    """Return the path of image `number` of `name` inside an LFW image folder: `Name/Name_0001.jpg`."""
    return f"{name}/{name}_{number:04d}{ext}"


def _lines(path: Path) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"LFW protocol file {path} not found: run `dvc repro download@lfw`") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not a text file ({err}): download it again") from None
    # splitlines() accepts \n, \r\n and \r; trailing blank lines are dropped, blank lines inside are errors.
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _int(value: str, path: Path, number: int, what: str) -> int:
    try:
        result = int(value)
    except ValueError:
        raise InputError(f"{path}, line {number}: {what} {value!r} is not an integer") from None
    if result < 1:
        raise InputError(f"{path}, line {number}: {what} {result} must be at least 1")
    return result


def _parse_pair(fields: list[str], same: bool, fold: int, path: Path, number: int) -> Pair:
    if same:
        if len(fields) != 3:
            raise InputError(
                f"{path}, line {number}: expected a matched pair 'name n1 n2' (3 fields), found {len(fields)} "
                f"fields: {fields}"
            )
        name, n1, n2 = fields
        return Pair(name, _int(n1, path, number, "image number"), name, _int(n2, path, number, "image number"),
                    True, fold)
    if len(fields) != 4:
        raise InputError(
            f"{path}, line {number}: expected a mismatched pair 'name1 n1 name2 n2' (4 fields), found "
            f"{len(fields)} fields: {fields}"
        )
    name1, n1, name2, n2 = fields
    return Pair(name1, _int(n1, path, number, "image number"), name2, _int(n2, path, number, "image number"),
                False, fold)


def _report_duplicates(pairs: list[tuple[int, Pair]], path: Path) -> None:
    def key(pair: Pair) -> tuple:
        first, second = (pair.name1, pair.n1), (pair.name2, pair.n2)
        return (min(first, second), max(first, second))

    counts = Counter(key(pair) for _, pair in pairs)
    repeated = {k for k, count in counts.items() if count > 1}
    if repeated:
        lines = [number for number, pair in pairs if key(pair) in repeated]
        log.warning("%s lists %d pairs more than once (lines %s)", path, len(repeated), lines[:20])


def read_pairs(path: Path) -> list[list[Pair]]:
    """Read an LFW pairs file into its folds, in file order (one fold for the View 1 files).

    Raises InputError naming the line for a header that does not match the number of lines, a line with the
    wrong number of fields or a non-integer image number. Pairs listed twice are logged as a warning.
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise InputError(f"{path} is empty: download it again")
    header = lines[0].split()
    if len(header) == 2:
        folds, per_class = (_int(v, path, 1, "header value") for v in header)
    elif len(header) == 1:
        folds, per_class = 1, _int(header[0], path, 1, "header value")
    else:
        raise InputError(
            f"{path}, line 1: expected a header '<folds> <pairs per class>' or '<pairs>', found {lines[0]!r}"
        )
    expected = folds * 2 * per_class
    if len(lines) - 1 != expected:
        raise InputError(
            f"{path}, line 1: the header promises {folds} fold(s) of {per_class} matched and {per_class} mismatched "
            f"pairs ({expected} lines), but the file has {len(lines) - 1} pair lines"
        )
    result: list[list[Pair]] = []
    numbered: list[tuple[int, Pair]] = []
    number = 1
    for fold in range(folds):
        current = []
        for same in (True, False):
            for _ in range(per_class):
                number += 1
                pair = _parse_pair(lines[number - 1].split(), same, fold, path, number)
                current.append(pair)
                numbered.append((number, pair))
        result.append(current)
    _report_duplicates(numbered, path)
    return result


def _read_set(lines: list[str], start: int, count: int, path: Path) -> list[tuple[str, int]]:
    """Read `count` `name images` lines starting at 0-based index `start`."""
    if start + count > len(lines):
        raise InputError(
            f"{path}, line {start}: the set promises {count} people but the file ends after "
            f"{len(lines) - start} more lines"
        )
    people = []
    for offset in range(count):
        number = start + offset + 1
        fields = lines[start + offset].split()
        if len(fields) != 2:
            raise InputError(
                f"{path}, line {number}: expected 'name images' (2 fields) in the set of {count} people counted on "
                f"line {start}, found {fields}"
            )
        people.append((fields[0], _int(fields[1], path, number, "image count")))
    return people


def read_people(path: Path) -> list[list[tuple[str, int]]]:
    """Read an LFW people file: a list of sets, each a list of (name, number of images).

    `people.txt` yields its ten sets; `peopleDevTrain.txt` and `peopleDevTest.txt` yield one set. Raises
    InputError naming the line when a count does not match the lines that follow it.
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise InputError(f"{path} is empty: download it again")
    first = _int(lines[0].strip(), path, 1, "count")
    # A single-set file continues with a 'name images' line, a multi-set file with the next set's count.
    if len(lines) > 1 and len(lines[1].split()) == 2:
        people = _read_set(lines, 1, first, path)
        if len(lines) != 1 + first:
            raise InputError(f"{path}, line 1: the header count is {first} people, but the file has {len(lines) - 1}")
        return [people]
    sets = []
    position = 1
    for _ in range(first):
        if position >= len(lines):
            raise InputError(f"{path}: the header promises {first} sets, but the file ends after {len(sets)}")
        count = _int(lines[position].strip(), path, position + 1, "set size")
        sets.append(_read_set(lines, position + 1, count, path))
        position += 1 + count
    if position != len(lines):
        raise InputError(f"{path}, line {position + 1}: unexpected lines after the {first} sets the header promises")
    return sets


def write_pairs_subset(path: Path, per_class: int) -> int:
    """Rewrite a pairs file in place, keeping the first `per_class` matched and mismatched pairs of each fold.

    Folds keep their order and structure, so the subset is still read by `read_pairs`. Return the pairs kept.
    """
    path = Path(path)
    folds = read_pairs(path)
    available = min(sum(p.same for p in fold) for fold in folds)
    kept = min(per_class, available)
    lines = _lines(path)
    header = f"{len(folds)}\t{kept}" if len(lines[0].split()) == 2 else f"{kept}"
    body = []
    for index in range(len(folds)):
        start = 1 + index * 2 * available
        body += lines[start : start + kept] + lines[start + available : start + available + kept]
    with atomic.atomic_path(path) as tmp:
        tmp.write_text("\n".join([header, *body]) + "\n", encoding="utf-8")
    return len(body)
