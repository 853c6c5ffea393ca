"""keras-hub's WordPiece tokenization in pure Python (no TensorFlow).

It gives exactly the token ids of keras-hub's `BertTokenizer` (tested against it).

Example:

>>> WordPieceTokenizer(["[UNK]", "a", "film"], lowercase=True).encode("A film")
[1, 2]
"""

import unicodedata

MAX_BYTES_PER_WORD = 100  # keras-hub / tensorflow-text: longer words become the OOV token

# Unicode default-ignorable code points, dropped by NFKC_Casefold (as keras-hub).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _in_ranges(char, ranges):
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


def _is_whitespace(char):
    # keras-hub's split regex: [ \t\n\r\f], \p{Cc}, \p{Cf}
    return char in " \t\n\r\f" or unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    # All non-letter/number ASCII, and \p{P}.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _casefold(text):
    # tensorflow-text's case_fold_utf8: NFKC_Casefold, which drops default ignorables.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _in_ranges(c, _DEFAULT_IGNORABLE))


class WordPieceTokenizer:
    """keras-hub's WordPiece tokenization, in pure Python.

    Args:
        vocabulary: the token list (index = id).
        lowercase, strip_accents, split_on_cjk: as keras-hub's `BertTokenizer`.
        oov_token, suffix_indicator: as keras-hub.

    Example:

    >>> tokenizer = WordPieceTokenizer(["[UNK]", "a", "wonder", "##ful", "film", "!"], lowercase=True)
    >>> tokenizer.tokenize("A wonderful film!")
    ['a', 'wonder', '##ful', 'film', '!']
    >>> tokenizer.encode("A wonderful film!")
    [1, 2, 3, 4, 5]
    """

    def __init__(self, vocabulary, lowercase=False, strip_accents=True, split_on_cjk=True,
                 oov_token="[UNK]", suffix_indicator="##"):
        self.vocabulary = list(vocabulary)
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        if oov_token not in self.ids:
            raise ValueError(f"The vocabulary has no OOV token {oov_token!r}.")
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.split_on_cjk = split_on_cjk
        self.oov_token = oov_token
        self.suffix_indicator = suffix_indicator
        self._cache = {}

    def words(self, text):
        """Pre-tokenization: accents, splitting on whitespace/punctuation/CJK, case folding."""
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words, current = [], []
        for char in text:
            separate = _is_punctuation(char) or (self.split_on_cjk and _in_ranges(char, _CJK))
            if separate or _is_whitespace(char):
                if current:
                    words.append("".join(current))
                    current = []
                if separate:
                    words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
        if self.lowercase:
            words = [_casefold(w) for w in words]
        return [w for w in words if w]

    def _word_pieces(self, word):
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [self.oov_token]
        pieces, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                candidate = word[start:end] if start == 0 else self.suffix_indicator + word[start:end]
                if candidate in self.ids:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [self.oov_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        """Word pieces of `text`."""
        pieces = []
        for word in self.words(text):
            if word not in self._cache:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[word] = self._word_pieces(word)
            pieces.extend(self._cache[word])
        return pieces

    def encode(self, text):
        """Token ids of `text`."""
        return [self.ids[p] for p in self.tokenize(text)]
