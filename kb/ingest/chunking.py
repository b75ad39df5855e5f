"""Token-aware chunking: sections by heading, then paragraphs, lines, sentences, clauses, words, and tokens.

Every chunk's embedded text (`q`, including the heading line when one is prefixed) is checked with the
injected `count_tokens`, so it never exceeds `max_tokens`: the embedder (all-MiniLM-L6-v2 reads 256
tokens) would silently drop the rest.

Heading prefix: a chunk under headings starts with one line "A > B" (the heading path) when that line
costs at most a quarter of `max_tokens`; otherwise only the innermost heading is tried, else no prefix.
Short chunks lose their topic words without it, and the budget pays for it. The full path is always in
`ChunkDraft.heading`.

Custom `separators` are hard boundaries inside text blocks: pieces on either side never share a chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from kb.ingest.types import Block, ChunkDraft, ParsedDocument

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n\s*")
# Chinese sentence ends need no space after them; "……" (two ellipsis characters) ends a Chinese sentence too.
_SENTENCE = re.compile(r"[。！？；!?]+[”’」』）)\]\"']*\s*|…{2,}[”’」』）)]*|[.?!…]+[\"')\]”’]*\s+|;\s+")
_CLAUSE = re.compile(r"[，、：]\s*|[,:]\s+")
_WORD = re.compile(r"\s+")
_TEXT_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _CLAUSE, _WORD)
_CODE_LEVELS = (re.compile(r"\n[ \t]*\n"), re.compile(r"\n"), _WORD)  # keep the next line's indentation
_TABLE_SEPARATOR_ROW = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_PREFIX_SHARE = 4  # the heading line may use at most 1/4 of the budget
_MAX_CHARS_PER_TOKEN = 32  # bounds the hard-split search window on huge unbroken text


@dataclass(frozen=True)
class _Atom:
    """An indivisible piece that fits the budget; `sep` joins it to the piece before it."""

    text: str
    sep: str
    kind: str
    page: int | None
    hard_break: bool = False


def chunk_document(
    doc: ParsedDocument,
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 256,
    overlap: float = 0.15,
    separators: Sequence[str] | None = None,
) -> list[ChunkDraft]:
    """Split a parsed document into chunks whose embedded text fits `max_tokens` of the embedder's tokenizer."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    counter = _CachedCounter(count_tokens)
    drafts: list[ChunkDraft] = []
    for path, blocks in _sections(doc.blocks):
        if blocks[0].kind == "qa" and counter(blocks[0].text) <= max_tokens:
            qa = blocks[0]
            drafts.append(
                ChunkDraft(q=qa.text, a=qa.answer or "", page=qa.page, token_count=counter(qa.text), kind="qa")
            )
            continue
        section = _Section(path, counter, max_tokens, overlap, tuple(s for s in separators or () if s))
        drafts.extend(section.chunk(blocks))
    return [replace(draft, position=index) for index, draft in enumerate(drafts)]


def _sections(blocks: Sequence[Block]) -> Iterator[tuple[tuple[str, ...], list[Block]]]:
    """Runs of body blocks under one heading path; each Q/A block alone; a heading with nothing under it as text."""
    run: list[Block] = []
    for index, block in enumerate(blocks):
        if block.kind == "heading":
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if following is not None and not (following.kind == "heading" and following.level <= block.level):
                continue  # its text lives on in the heading path of what follows
            block = Block(text=block.text, page=block.page, heading_path=block.heading_path)
        if run and (block.kind == "qa" or block.heading_path != run[0].heading_path):
            yield run[0].heading_path, run
            run = []
        if block.kind == "qa":
            if block.text.strip():
                yield block.heading_path, [block]
            continue
        run.append(block)
    if run:
        yield run[0].heading_path, run


def _qa_as_text(block: Block) -> Block:
    return Block(text=f"{block.text}\n{block.answer or ''}".strip(), page=block.page, heading_path=block.heading_path)


class _CachedCounter:
    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self._count = count_tokens
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._cache:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[text] = self._count(text)
        return self._cache[text]


class _Section:
    """Chunks the body blocks that share one heading path."""

    def __init__(
        self, path: tuple[str, ...], count: _CachedCounter, max_tokens: int, overlap: float, separators: tuple[str, ...]
    ):
        self.path = path
        self.count = count
        self.max_tokens = max_tokens
        self.separators = separators
        self.prefix = self._prefix()
        self.overlap_tokens = int(max_tokens * max(0.0, min(overlap, 0.5)))
        self.overhead = count("")  # special tokens the tokenizer adds to every text, counted once per chunk

    def _prefix(self) -> str:
        for heading in (" > ".join(self.path), self.path[-1] if self.path else ""):
            if heading and self.count(heading) <= self.max_tokens // _PREFIX_SHARE:
                return heading + "\n"
        return ""

    def fits(self, body: str) -> bool:
        return self.count(self.prefix + body) <= self.max_tokens

    def chunk(self, blocks: list[Block]) -> list[ChunkDraft]:
        atoms = [atom for block in blocks for atom in self._atoms(block)]
        return [self._draft(group) for group in self._pack(atoms)]

    # -- splitting blocks into atoms that fit -------------------------------------------------

    def _atoms(self, block: Block) -> list[_Atom]:
        if block.kind == "qa":
            block = _qa_as_text(block)  # a Q/A pair whose question is too long to embed is chunked as text
        if block.kind == "table" and not self.fits(block.text):
            return self._table_atoms(block)
        if block.kind == "code":
            pieces = self._split(block.text, _CODE_LEVELS)
            return self._to_atoms(pieces, "code", block.page)
        if block.kind == "table":
            return [_Atom(block.text, "\n\n", "table", block.page)]
        atoms: list[_Atom] = []
        for number, part in enumerate(_split_on_custom(block.text, self.separators)):
            part_atoms = self._to_atoms(self._split(part, _TEXT_LEVELS), "text", block.page)
            if part_atoms and number > 0:
                part_atoms[0] = replace(part_atoms[0], hard_break=True)
            atoms.extend(part_atoms)
        if atoms and any(not s.strip() for s in self.separators):
            atoms[0] = replace(atoms[0], hard_break=True)  # readers already split blank-line paragraphs into blocks
        return atoms

    def _to_atoms(self, pieces: list[str], kind: str, page: int | None) -> list[_Atom]:
        """Atoms joined by the whitespace that separated them in the source ("\\n\\n" at a block start)."""
        atoms: list[_Atom] = []
        sep = "\n\n"
        for piece in pieces:
            body = piece.rstrip()
            text = body.strip("\n") if kind == "code" else body.strip()
            if text:
                atoms.append(_Atom(text, sep, kind, page))
                sep = piece[len(body) :]
        return atoms

    def _split(self, text: str, levels: Sequence[re.Pattern[str]]) -> list[str]:
        """Pieces (keeping their trailing separators) that each fit, split at the coarsest level that helps."""
        if self.fits(text.strip()):
            return [text]
        for depth, pattern in enumerate(levels):
            parts = _split_after(text, pattern)
            if len(parts) > 1:
                return [piece for part in parts for piece in self._split(part, levels[depth + 1 :])]
        return self._hard_split(text)

    def _hard_split(self, text: str) -> list[str]:
        """Longest prefixes that fit, found by binary search on characters; a last resort for unbroken text."""
        pieces = []
        while text:
            low, high = 1, min(len(text), self.max_tokens * _MAX_CHARS_PER_TOKEN)
            while low < high:
                middle = (low + high + 1) // 2
                if self.fits(text[:middle].strip()):
                    low = middle
                else:
                    high = middle - 1
            cut = low
            space = text.rfind(" ", int(cut * 0.8), cut)
            if space > 0 and cut < len(text):
                cut = space + 1
            pieces.append(text[:cut])
            text = text[cut:]
        return pieces

    def _table_atoms(self, block: Block) -> list[_Atom]:
        """Rows packed into pieces, each starting with the header rows of a Markdown table."""
        lines = [line for line in block.text.split("\n") if line.strip()]
        header: list[str] = lines[:2] if len(lines) > 2 and _TABLE_SEPARATOR_ROW.match(lines[1]) else []
        if header and not self.fits("\n".join(header + lines[2:3])):
            header = []  # a header too big to repeat: the rows go on their own
        atoms: list[_Atom] = []
        rows: list[str] = []
        for line in lines[len(header) :]:
            if rows and not self.fits("\n".join(header + rows + [line])):
                atoms.append(_Atom("\n".join(header + rows), "\n\n", "table", block.page))
                rows = []
            if self.fits("\n".join(header + [line])):
                rows.append(line)
            else:
                atoms.extend(self._to_atoms(self._split(line, _TEXT_LEVELS), "table", block.page))
        if rows:
            atoms.append(_Atom("\n".join(header + rows), "\n\n", "table", block.page))
        return atoms

    # -- packing atoms into chunks --------------------------------------------------------------

    def _pack(self, atoms: list[_Atom]) -> list[list[_Atom]]:
        """Greedy packing up to the budget, then the last two chunks of each run are evened out."""
        groups: list[list[_Atom]] = []
        for run in _hard_runs(atoms):
            packed: list[list[_Atom]] = []
            start = 0
            while start < len(run):
                lead, taken = self._next_chunk(packed[-1] if packed else None, run, start)
                packed.append(lead + run[start : start + taken])
                start += taken
            groups.extend(self._even_out_tail(packed))
        return groups

    def _next_chunk(self, previous: list[_Atom] | None, run: list[_Atom], start: int) -> tuple[list[_Atom], int]:
        """The overlap that opens the chunk after `previous` and how many atoms from `run[start]` follow it."""
        for lead in self._leads(previous, run[start]) if previous else ():
            taken = self._fill(lead, run, start)
            if taken:
                return lead, taken
        return [], self._fill([], run, start)

    def _fill(self, lead: list[_Atom], run: list[_Atom], start: int) -> int:
        """How many atoms from `run[start]` on fit after `lead`: as many as do, and without a lead at least one.

        Re-counting the growing chunk atom by atom tokenizes it over and over. Instead the counts already
        made of each atom estimate how many fit, and exact counts of the whole chunk confirm the largest
        that does; a chunk's count only grows as atoms are appended, so that is the greedy answer.
        """
        least = 0 if lead else 1  # a lone atom always fits; an overlap only opens a chunk its first atom fits in

        def fits(taken: int) -> bool:
            return taken <= least or self.fits(_join(lead + run[start : start + taken]))

        used, taken = self.count(self.prefix) + self._size(lead), 0
        while start + taken < len(run):
            cost = self._added_cost(run[start + taken])
            if taken >= least and used + cost > self.max_tokens:
                break
            used += cost
            taken += 1
        if fits(taken):
            while start + taken < len(run) and fits(taken + 1):
                taken += 1
        else:
            taken -= 1
            while not fits(taken):
                taken -= 1
        return taken

    def _even_out_tail(self, packed: list[list[_Atom]]) -> list[list[_Atom]]:
        """Re-split the last two chunks where their sizes are closest, so a run does not end with a scrap."""
        if len(packed) < 2 or self._size(packed[-1]) >= self.max_tokens // 2:
            return packed
        lead = [atom for atom in packed[-2][:1] if atom.kind == "overlap"]
        atoms = [atom for atom in packed[-2] + packed[-1] if atom.kind != "overlap"]
        best: tuple[int, list[_Atom], list[_Atom]] | None = None
        for cut in range(1, len(atoms)):
            left = lead + atoms[:cut]
            right = self._overlap(left, atoms[cut]) + atoms[cut:]
            if self.fits(_join(left)) and self.fits(_join(right)):
                spread = abs(self._size(left) - self._size(right))
                if best is None or spread < best[0]:
                    best = (spread, left, right)
        return packed[:-2] + [best[1], best[2]] if best else packed

    def _added_cost(self, atom: _Atom) -> int:
        """About what appending `atom` to a chunk costs, from counts `_split` made (it counts each atom after the prefix)."""
        return self.count(self.prefix + atom.text) - self.count(self.prefix)

    def _size(self, atoms: list[_Atom]) -> int:
        return sum(self.count(atom.text) - self.overhead for atom in atoms)

    def _overlap(self, previous: list[_Atom], following: _Atom) -> list[_Atom]:
        """The end of the previous chunk (about `overlap` of the budget), when both sides are prose."""
        return next((lead for lead in self._leads(previous, following) if self.fits(_join(lead + [following]))), [])

    def _leads(self, previous: list[_Atom], following: _Atom) -> Iterator[list[_Atom]]:
        """Overlaps to try, longest first: ever shorter ends of the previous chunk, when both sides are prose."""
        if not self.overlap_tokens or following.kind != "text" or previous[-1].kind != "text":
            return
        tail = self._tail(_join(previous))
        while tail:
            yield [_Atom(tail, "", "overlap", previous[-1].page)]
            tail = self._tail(tail[len(tail) // 4 :]) if len(tail) > 8 else ""

    def _tail(self, text: str) -> str:
        """The longest run of whole sentences (else clauses, words, characters) at the end within the overlap budget."""
        for pattern in (_SENTENCE, _CLAUSE, _WORD):
            # Every part costs at least one token, so no more than `overlap_tokens` of them can fit; a binary
            # search for how many do (the count only grows as parts are added) saves re-counting word by word.
            parts = _split_after(text, pattern)[1:][-self.overlap_tokens :]
            kept = _most(
                len(parts),
                lambda n, parts=parts: self.count("".join(parts[len(parts) - n :]).strip()) <= self.overlap_tokens,
            )
            tail = "".join(parts[len(parts) - kept :]).strip()
            if tail:
                return tail
        kept = _most(len(text), lambda n: self.count(text[len(text) - n :].strip()) <= self.overlap_tokens)
        return text[len(text) - kept :].strip()

    def _draft(self, atoms: list[_Atom]) -> ChunkDraft:
        q = self.prefix + _join(atoms)
        page = next((atom.page for atom in atoms if atom.kind != "overlap"), atoms[0].page)
        return ChunkDraft(q=q, page=page, heading=" > ".join(self.path), token_count=self.count(q))


def _join(atoms: list[_Atom]) -> str:
    return atoms[0].text + "".join(atom.sep + atom.text for atom in atoms[1:])


def _most(limit: int, fits: Callable[[int], bool]) -> int:
    """The largest n <= limit for which `fits(n)` holds, where it holds up to some n and not beyond; 0 if none.

    The overlap is short and its search starts from the end of a long chunk, so the steps double from 1
    (then bisect) rather than bisect from the middle: the texts counted stay about as short as the answer.
    """
    low, step = 0, 1
    while low < limit and fits(min(low + step, limit)):
        low, step = min(low + step, limit), step * 2
    high = min(low + step, limit + 1)  # fits(high) fails, or high is past the limit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _hard_runs(atoms: list[_Atom]) -> Iterator[list[_Atom]]:
    run: list[_Atom] = []
    for atom in atoms:
        if atom.hard_break and run:
            yield run
            run = []
        run.append(atom)
    if run:
        yield run


def _split_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split `text` after each match of `pattern`, keeping the matched separator at the end of the left piece."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if start < match.end() < len(text) and text[start : match.end()].strip():
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _split_on_custom(text: str, separators: tuple[str, ...]) -> list[str]:
    if not separators:
        return [text]
    pattern = "|".join(re.escape(s) for s in sorted(separators, key=len, reverse=True))
    return [part for part in re.split(pattern, text) if part.strip()]
