"""A tiny phrase-structure grammar: captions and statements are built as trees, so their SNLI-style
parses (Penn Treebank brackets and the unlabelled binary parse) come for free and always match the text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tree:
    """A constituent: `label` over children; a pre-terminal has exactly one str child (the word)."""

    label: str
    children: tuple[Tree | str, ...]


def leaf(tag: str, word: str) -> Tree:
    return Tree(tag, (word,))


def node(label: str, *children: Tree) -> Tree:
    return Tree(label, tuple(children))


def words(t: Tree | str) -> list[str]:
    """The leaves, left to right."""
    out: list[str] = []
    stack: list[Tree | str] = [t]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        else:
            stack.extend(reversed(item.children))
    return out


def sentence(t: Tree) -> str:
    """The surface text: first letter upper-cased, no space before ',' or '.'."""
    out = ""
    for w in words(t):
        out += w if (not out or w in ",.") else " " + w
    return out[:1].upper() + out[1:]


def _first_word(t: Tree | str) -> list[str]:
    """[the first leaf, capitalised] (what the parses print for the sentence's first word)."""
    while isinstance(t, Tree):
        t = t.children[0]
    return [t[:1].upper() + t[1:]]


def ptb(t: Tree | str) -> str:
    """'(ROOT (S (NP (DT A) (NN circle)) ...))' with the first word capitalised, as in SNLI."""
    return _ptb(t, _first_word(t))


def _ptb(t: Tree | str, first: list[str]) -> str:
    if isinstance(t, str):
        if first:
            return first.pop()
        return t
    return "(" + t.label + " " + " ".join(_ptb(c, first) for c in t.children) + ")"


def binary(t: Tree | str) -> str:
    """SNLI's binary parse: unlabelled, right-branching binarisation, unary nodes collapsed."""
    return _binary(t, _first_word(t))


def _binary(t: Tree | str, first: list[str]) -> str:
    if isinstance(t, str):
        return first.pop() if first else t
    kids = list(t.children)
    if len(kids) == 1:
        return _binary(kids[0], first)
    head = _binary(kids[0], first)
    rest = _binary(Tree("X", tuple(kids[1:])), first)
    return f"( {head} {rest} )"


# ---- phrase builders -------------------------------------------------------------------------------


def noun_phrase(det: str, adjectives: list[str], noun: str, plural: bool = False) -> Tree:
    """(NP (DT a) (JJ red) (NN circle)); det may be a number word (CD) or '' for none."""
    kids: list[Tree] = []
    if det:
        kids.append(leaf("CD" if det not in ("a", "an", "the", "no") else "DT", det))
    kids += [leaf("JJ", a) for a in adjectives]
    kids.append(leaf("NNS" if plural else "NN", noun))
    return node("NP", *kids)


def relation_pp(phrase: str, obj: Tree) -> Tree:
    """'to the left of X' / 'to the right of X' / 'above X' / 'below X' / 'next to X' as a PP."""
    if phrase.startswith("to the "):
        side = phrase.split()[2]
        inner = node("NP", node("NP", leaf("DT", "the"), leaf("NN", side)), node("PP", leaf("IN", "of"), obj))
        return node("PP", leaf("TO", "to"), inner)
    if phrase == "next to":
        return node("ADVP", leaf("JJ", "next"), node("PP", leaf("TO", "to"), obj))
    return node("PP", leaf("IN", phrase), obj)


def clause(subject: Tree, predicate: Tree) -> Tree:
    """(ROOT (S subject predicate (. .)))."""
    return node("ROOT", node("S", subject, predicate, leaf(".", ".")))


def fragment(*parts: Tree) -> Tree:
    """A caption that is a noun phrase: (ROOT (NP parts... (. .)))."""
    return node("ROOT", node("NP", *parts, leaf(".", ".")))


def copula(predicate: Tree, plural: bool = False) -> Tree:
    """(VP (VBZ is) predicate)."""
    return node("VP", leaf("VBP" if plural else "VBZ", "are" if plural else "is"), predicate)


def there_is(np: Tree, plural: bool) -> Tree:
    """'There is a red circle.' / 'There are two red circles.'"""
    return clause(node("NP", leaf("EX", "there")), copula(np, plural))
