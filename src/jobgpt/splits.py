"""Which documents go to validation: content fingerprints, groups of near-duplicates, and the
seeded split rule.

Postings of one company repeat the same intro and benefits paragraphs; if one landed in train
and its twin in val, val loss would measure memorisation. Documents sharing a long paragraph are
joined into one group, and a group goes to val or train as a whole, by a seeded hash of its name:
deterministic, independent of the input order, and the same on every machine.
"""

from __future__ import annotations

import hashlib


def fingerprint(data: bytes) -> int:
    """A 64-bit content hash (blake2b), stable across runs and machines (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def paragraph_fingerprints(text: str, min_chars: int) -> list[int]:
    """Fingerprints of the blank-line-separated paragraphs of at least ``min_chars`` characters."""
    if min_chars <= 0:
        return []
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return [
        fingerprint(p.strip().encode("utf-8")) for p in text.split("\n\n") if len(p) >= min_chars
    ]


class Groups:
    """Union-find over 64-bit keys. A set's root is its smallest key, whatever the union order."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, key: int) -> int:
        root = key
        while (up := self.parent.get(root, root)) != root:
            root = up
        while key != root:  # path compression keeps later finds short
            self.parent[key], key = root, self.parent[key]
        return root

    def link(self, keys: list[int]) -> None:
        """Put all ``keys`` in one set."""
        if not keys:
            return
        root = self.find(keys[0])
        for key in keys[1:]:
            other = self.find(key)
            if other != root:
                root, child = min(root, other), max(root, other)
                self.parent[child] = root
        self.parent.setdefault(root, root)


def link_document(groups: Groups, text: str, min_chars: int) -> int:
    """Join the document to every group it shares a paragraph of ``min_chars``+ with; returns the
    key to find its group by. A document without long paragraphs is a group of its own, named by
    its fingerprint."""
    paragraphs = paragraph_fingerprints(text, min_chars)
    groups.link(paragraphs)
    return paragraphs[0] if paragraphs else fingerprint(text.encode("utf-8"))


def split_score(group: int, seed: int) -> float:
    """A group's seeded position in [0, 1): groups below val_fraction go to val."""
    data = seed.to_bytes(8, "little", signed=True) + group.to_bytes(8, "little")
    return fingerprint(data) / 2.0**64
