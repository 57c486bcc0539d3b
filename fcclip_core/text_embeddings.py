"""Text-classifier rows for a vocabulary, computed with the CLIP text tower and cached per name.

FC-CLIP classifies against one row per class *name* (synonym): the name is put into each of the
14 prompt templates, each prompt goes through CLIP's text tower (``encode_text`` without
normalisation), every prompt feature is L2-normalised, the 14 are averaged and the mean is
L2-normalised again. A class then scores as the best of its names (done by the model).

Cost. The text tower is a causal transformer: the feature of a prompt is the hidden state at its
end-of-text token, which depends only on the tokens up to it. So the padding after it (77 - ~10
positions per prompt) needs no work, and neither do positions that several prompts share: all
prompts of one template start with the same tokens, many names share their first words. The
encoder therefore lays the token sequences of a batch of prompts out as a prefix tree, packs
the tree's nodes into one sequence, and runs ``model.transformer`` on it once with an attention
mask that lets every node see exactly its ancestors, i.e. the tokens before it in its own prompt,
at the positional embeddings of those positions. Each token's attention covers the same keys as
in the plain causal run (masked keys get exactly zero weight), so the features equal the
full-length ``encode_text`` up to float rounding, from ~5% of the token positions (tested
against ``encode_text``). Text towers where that argument does not hold (no causal mask, a
class token, pooling other than at the end-of-text token, non-open_clip towers) are run through
their own ``encode_text`` at full length.

Cache. Rows are cached per name (its exact text); a vocabulary whose names were all seen before
costs a dictionary look-up, a new one encodes only its new names. The cache belongs to one text
tower and one template set; it empties itself when the tower's weights change (loaded, moved to
another device or dtype), detected from the parameters' storage and version counters.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from fcclip_core.vocabulary import PROMPT_TEMPLATES, Vocabulary, build_prompts


class EncodingCancelled(RuntimeError):
    """The text encoding was stopped by ``TextEmbeddingCache.abort`` (the model is being released)."""


@dataclass(frozen=True)
class ClassEmbeddings:
    """The text classifier of a vocabulary: what the FC-CLIP network needs besides the image."""

    embeddings: torch.Tensor  # [S, E] float32, one L2-normalised row per name, class by class
    synonym_counts: tuple[int, ...]  # [K] rows per class
    seen: torch.Tensor  # [K] int64, 1 = seen in training (official category_overlapping_mask)
    vocabulary: Vocabulary


@dataclass(frozen=True)
class TextEmbeddingStats:
    """Counters since the cache was made (``clear`` keeps them); they measure work, not time."""

    cached_names: int = 0  # names held now
    max_cached_names: int = 0  # the cap: least recently used names beyond it are forgotten
    evicted_names: int = 0  # names forgotten to stay under the cap
    embed_calls: int = 0
    names_from_cache: int = 0  # distinct names answered without encoding
    names_encoded: int = 0
    prompts_encoded: int = 0
    token_positions: int = 0  # transformer positions computed (packed tree nodes or full rows)
    forward_passes: int = 0
    last_encode_seconds: float = 0.0


# ----------------------------------------------------------------------------------------------
# The text tower's parts


# Names the text-embedding cache keeps by default: every official evaluation vocabulary together
# holds a few thousand names, so only a long run with ever-new classes reaches it.
DEFAULT_MAX_CACHED_NAMES = 20000

_TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final", "text_projection")


@dataclass
class _TextTower:
    """The pieces of an open_clip text tower that encoding uses, wherever the model keeps them."""

    module: nn.Module
    full_encode: Callable[[torch.Tensor], torch.Tensor]  # the model's own encode_text(tokens)
    context_length: int
    pool_type: Optional[str] = None  # "argmax" or "eos" when the feature is the end-of-text state
    eos_id: Optional[int] = None
    packable: bool = False  # prefix-tree packing gives the same features (see module docstring)

    def part(self, name: str) -> Any:
        """Looked up on each use: ``model.to(...)`` replaces buffers such as the causal mask."""
        return getattr(self.module, name, None)

    def pooled_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position of the token whose state becomes the feature, per row (open_clip's rule)."""
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)

    def weights(self) -> list[torch.Tensor]:
        """The text tower's tensors (not the vision tower's, which may share the module)."""
        found: list[torch.Tensor] = []
        for part in map(self.part, _TEXT_PARTS):
            if isinstance(part, nn.Module):
                found += list(part.parameters()) + list(part.buffers())
            elif isinstance(part, torch.Tensor):
                found.append(part)
        return found or list(self.module.parameters()) + list(self.module.buffers())

    def fingerprint(self) -> tuple:
        """Changes when any weight is replaced, modified in place, moved or cast."""
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self.weights())


def _resolve_tower(model: nn.Module) -> _TextTower:
    """Find the text tower in an open_clip CLIP / CustomTextCLIP model, or a bare TextTransformer."""
    from open_clip.transformer import TextTransformer

    if hasattr(model, "text") and isinstance(getattr(model, "text"), nn.Module):
        owner, full = model.text, model.encode_text  # CustomTextCLIP
    elif isinstance(model, TextTransformer):
        owner, full = model, model.forward
    elif hasattr(model, "encode_text"):
        owner, full = model, model.encode_text
    else:
        raise TypeError(f"{type(model).__name__} is not an open_clip model with a text tower")
    if isinstance(owner, TextTransformer):
        pool_type, eos_id, cls_emb = owner.pool_type, owner.eos_id, owner.cls_emb
    else:
        pool_type = getattr(owner, "text_pool_type", None)
        eos_id, cls_emb = getattr(owner, "text_eos_id", None), None
    context = int(getattr(owner, "context_length", 0) or getattr(model, "context_length", 0) or 77)
    packable = (
        all(getattr(owner, name, None) is not None for name in _TEXT_PARTS[:5])
        and pool_type in ("argmax", "eos")
        and cls_emb is None
        and _is_causal_mask(getattr(owner, "attn_mask"), context)
    )
    return _TextTower(module=owner, full_encode=full, context_length=context, pool_type=pool_type,
                      eos_id=eos_id, packable=packable)


def _is_causal_mask(mask: Optional[torch.Tensor], context: int) -> bool:
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (context, context):
        return False
    above = torch.ones(context, context, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.equal(torch.isneginf(mask), above) and (mask[~above] == 0).all())


# ----------------------------------------------------------------------------------------------
# Prefix-tree packing


@dataclass
class PromptPack:
    """Token sequences merged into a prefix tree, laid out as one sequence (parents first)."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # depth in the tree = position in the prompt
    parents: list[int] = field(default_factory=list)  # -1 for a first token
    outputs: list[tuple[int, int]] = field(default_factory=list)  # (sequence index, node of its last token)
    children: dict[tuple[int, int], int] = field(default_factory=dict)

    def new_nodes(self, sequence: Sequence[int]) -> int:
        """How many nodes adding ``sequence`` would create."""
        node = -1
        for depth, token in enumerate(sequence):
            node = self.children.get((node, token), -2)
            if node == -2:
                return len(sequence) - depth
        return 0

    def add(self, index: int, sequence: Sequence[int]) -> None:
        node = -1
        for depth, token in enumerate(sequence):
            child = self.children.get((node, token))
            if child is None:
                child = len(self.tokens)
                self.children[(node, token)] = child
                self.tokens.append(token)
                self.positions.append(depth)
                self.parents.append(node)
            node = child
        self.outputs.append((index, node))

    def attention_mask(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Additive [N, N] mask: node i sees itself and its ancestors, nothing else."""
        count = len(self.tokens)
        allowed = torch.zeros(count, count, dtype=torch.bool)
        for node, parent in enumerate(self.parents):
            if parent >= 0:
                allowed[node] = allowed[parent]
            allowed[node, node] = True
        mask = torch.zeros(count, count, dtype=dtype).masked_fill_(~allowed, float("-inf"))
        return mask.to(device)


def pack_prompt_tree(sequences: Sequence[Sequence[int]], max_tokens: int) -> list[PromptPack]:
    """Split token sequences into packs of at most ``max_tokens`` tree nodes each.

    Sequences are taken in lexicographic order so that those sharing a prefix land in the same
    pack; a pack is closed when the next sequence would not fit.
    """
    if max_tokens < max((len(s) for s in sequences), default=0):
        raise ValueError(f"max_tokens={max_tokens} is shorter than the longest prompt")
    packs: list[PromptPack] = []
    current = PromptPack()
    for index in sorted(range(len(sequences)), key=lambda i: tuple(sequences[i])):
        sequence = sequences[index]
        if current.tokens and len(current.tokens) + current.new_nodes(sequence) > max_tokens:
            packs.append(current)
            current = PromptPack()
        current.add(index, sequence)
    if current.tokens:
        packs.append(current)
    return packs


# ----------------------------------------------------------------------------------------------
# Prompt encoder (no cache)


class PromptEncoder:
    """Raw CLIP text features (``encode_text(normalize=False)``) of prompts, with as little work as possible."""

    def __init__(self, clip_model: nn.Module, tokenizer: Optional[Callable] = None, tokens_per_pass: int = 512):
        self.tower = _resolve_tower(clip_model)
        self.tokenizer = tokenizer or _default_tokenizer(self.tower.context_length)
        if tokens_per_pass < self.tower.context_length:
            raise ValueError(f"tokens_per_pass must be at least the context length {self.tower.context_length}")
        self.tokens_per_pass = int(tokens_per_pass)
        self.stop_requested: Callable[[], bool] = lambda: False  # checked between passes

    @property
    def device(self) -> torch.device:
        return self.tower.weights()[0].device

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """[P, context] token ids from the tower's tokenizer."""
        return self.tokenizer(list(prompts))

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, int, int]:
        """(features [P, E] in the tower's dtype, token positions computed, forward passes)."""
        tokens = self.tokenize(prompts)
        with torch.inference_mode():
            tokens = tokens.to(self.device)
            if self.tower.packable:
                self._check_fits(prompts, tokens)
                return self._encode_packed(tokens)
            return self._encode_full(tokens)

    def _check_fits(self, prompts: Sequence[str], tokens: torch.Tensor) -> None:
        """Reject prompts that fill the whole context: the tokenizer cut them (the official code would not say)."""
        ends = self.tower.pooled_index(tokens)
        too_long = (ends >= tokens.shape[1] - 1).nonzero().flatten().tolist()
        if too_long:
            raise ValueError(f"prompt {prompts[too_long[0]]!r} is too long for the text tower's "
                             f"{tokens.shape[1]} tokens; use a shorter class name")

    def _encode_packed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        ends = self.tower.pooled_index(tokens).tolist()
        rows = tokens.tolist()
        sequences = [row[: end + 1] for row, end in zip(rows, ends)]
        packs = pack_prompt_tree(sequences, self.tokens_per_pass)
        features: Optional[torch.Tensor] = None
        for pack in packs:
            self._check_not_stopped()
            out = self._run_pack(pack)
            if features is None:
                features = out.new_empty(len(sequences), out.shape[-1])
            features[[index for index, _ in pack.outputs]] = out
        assert features is not None
        return features, sum(len(pack.tokens) for pack in packs), len(packs)

    def _run_pack(self, pack: PromptPack) -> torch.Tensor:
        """The end-of-text features of one pack's prompts: the steps of open_clip's encode_text."""
        part = self.tower.part
        dtype = part("transformer").get_cast_dtype()
        device = part("token_embedding").weight.device
        tokens = torch.tensor([pack.tokens], dtype=torch.long, device=device)
        positions = torch.tensor(pack.positions, dtype=torch.long, device=device)
        x = part("token_embedding")(tokens).to(dtype) + part("positional_embedding")[positions].to(dtype)
        x = part("transformer")(x, attn_mask=pack.attention_mask(dtype, device))
        x = part("ln_final")(x)
        ends = torch.tensor([node for _, node in pack.outputs], dtype=torch.long, device=device)
        return _project(x[0, ends], part("text_projection"))

    def _encode_full(self, tokens: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        step = max(1, self.tokens_per_pass // tokens.shape[1])
        chunks = []
        for i in range(0, tokens.shape[0], step):
            self._check_not_stopped()
            chunks.append(self.tower.full_encode(tokens[i:i + step]))
        return torch.cat(chunks), tokens.numel(), len(chunks)

    def _check_not_stopped(self) -> None:
        if self.stop_requested():
            raise EncodingCancelled("text encoding cancelled: the model is being released")


def _project(x: torch.Tensor, projection: Any) -> torch.Tensor:
    if projection is None:
        return x
    if isinstance(projection, nn.Module):
        return projection(x)
    return x @ projection


def _default_tokenizer(context_length: int) -> Callable:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def name_embeddings(raw: torch.Tensor, templates_per_name: int) -> torch.Tensor:
    """[names * templates, E] raw prompt features -> [names, E] rows, as the official code averages."""
    raw = raw.float()
    raw = raw / raw.norm(dim=-1, keepdim=True)
    rows = raw.reshape(-1, templates_per_name, raw.shape[-1]).mean(dim=1)
    return rows / rows.norm(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# The cache


class TextEmbeddingCache:
    """Per-name text-classifier rows of one CLIP text tower; thread-safe.

    ``embed`` may run in a background thread while another thread runs the vision model: the
    lock guards only the cache's dictionaries, never the encoding, so a call whose names are all
    cached returns at once even while another call encodes. Two calls needing the same new name
    encode it once (the second waits for the first).

    The cache holds at most ``max_cached_names`` names and forgets the least recently used
    beyond that, so a long mission with ever-changing vocabularies keeps a bounded memory.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Optional[Callable] = None,
        tokens_per_pass: int = 512,
        device: torch.device | str | None = None,
        templates: Sequence[str] = PROMPT_TEMPLATES,
        train_vocabulary: Optional[Vocabulary] = None,
        max_cached_names: int = DEFAULT_MAX_CACHED_NAMES,
    ):
        """``tokens_per_pass``: tree nodes per transformer pass (memory vs. efficiency);
        ``device``: where returned embeddings live (default: the text tower's device);
        ``train_vocabulary``: what "seen" is measured against (default COCO panoptic);
        ``max_cached_names``: the LRU cap (rows are ~E floats each: 20000 x 768 x 4 B = 61 MB)."""
        if max_cached_names < 1:
            raise ValueError(f"max_cached_names must be at least 1, got {max_cached_names}")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("every prompt template needs a '{}' for the class name")
        self.encoder = PromptEncoder(clip_model, tokenizer, tokens_per_pass)
        self._aborted = threading.Event()
        self.encoder.stop_requested = self._aborted.is_set
        self.templates = tuple(templates)
        self.device = torch.device(device) if device is not None else None
        self.train_vocabulary = train_vocabulary
        self._lock = threading.Lock()
        self.max_cached_names = int(max_cached_names)
        self._rows: OrderedDict[str, torch.Tensor] = OrderedDict()  # least recently used first
        self._pending: dict[str, threading.Event] = {}
        self._fingerprint = self.encoder.tower.fingerprint()
        self._counts = TextEmbeddingStats(max_cached_names=self.max_cached_names)

    # -- public -------------------------------------------------------------------------------

    def embed(self, vocabulary: Vocabulary) -> ClassEmbeddings:
        """The classifier rows of ``vocabulary``, encoding only names not cached yet."""
        names = vocabulary.names
        rows = self._rows_for(list(dict.fromkeys(names)))
        device = self.device or self.encoder.device
        with torch.no_grad():  # plain tensors for the caller, not inference-mode ones
            embeddings = torch.stack([rows[name] for name in names]).to(device=device, dtype=torch.float32)
        seen = torch.tensor(vocabulary.seen_mask(self.train_vocabulary), dtype=torch.int64, device=device)
        return ClassEmbeddings(embeddings, vocabulary.synonym_counts, seen, vocabulary)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Raw prompt features [P, E] (``encode_text(normalize=False)``); no caching."""
        features, _, _ = self.encoder.encode(prompts)
        return features.clone()

    @property
    def stats(self) -> TextEmbeddingStats:
        with self._lock:
            return replace(self._counts, cached_names=len(self._rows), max_cached_names=self.max_cached_names)

    def tower_tensors(self) -> list[torch.Tensor]:
        """The text tower's weights (e.g. to page them out while no encoding is needed)."""
        return self.encoder.tower.weights()

    def abort(self) -> None:
        """Stop every running and future encoding at its next transformer pass (EncodingCancelled).

        For releasing a model while a long vocabulary is being encoded: the caller gets an error
        within one pass instead of the release waiting for the whole encoding. Cached rows still
        answer; the cache cannot encode again afterwards.
        """
        self._aborted.set()

    def clear(self) -> None:
        """Forget every cached row (e.g. to free memory); the counters stay."""
        with self._lock:
            self._rows.clear()

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._rows

    # -- internals ----------------------------------------------------------------------------

    def _rows_for(self, names: list[str]) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        first_round = True
        while True:
            with self._lock:
                self._drop_if_weights_changed()
                for name in names:
                    if name in self._rows and name not in found:
                        found[name] = self._rows[name]
                        self._rows.move_to_end(name)
                if first_round:
                    self._counts = replace(self._counts, embed_calls=self._counts.embed_calls + 1,
                                            names_from_cache=self._counts.names_from_cache + len(found))
                    first_round = False
                missing = [n for n in names if n not in found]
                waiting = [self._pending[n] for n in missing if n in self._pending]
                mine = [n for n in missing if n not in self._pending]
                done = threading.Event()
                for name in mine:
                    self._pending[name] = done
            if not missing:
                return found
            if mine:
                try:
                    found.update(self._encode_names(mine))
                finally:
                    with self._lock:
                        for name in mine:
                            self._pending.pop(name, None)
                    done.set()
            for event in waiting:
                event.wait()

    def _encode_names(self, names: list[str]) -> dict[str, torch.Tensor]:
        start = time.perf_counter()
        generation = self._fingerprint
        raw, positions, passes = self.encoder.encode(build_prompts(names, self.templates))
        with torch.inference_mode():
            rows = name_embeddings(raw, len(self.templates))
        new = dict(zip(names, rows.unbind(0)))
        with self._lock:
            if generation == self._fingerprint:  # weights unchanged meanwhile: keep them
                self._rows.update(new)
                evicted = self._evict()
            else:
                evicted = 0
            c = self._counts
            self._counts = replace(c, names_encoded=c.names_encoded + len(names),
                                    prompts_encoded=c.prompts_encoded + len(names) * len(self.templates),
                                    token_positions=c.token_positions + positions,
                                    forward_passes=c.forward_passes + passes,
                                    last_encode_seconds=time.perf_counter() - start,
                                    evicted_names=c.evicted_names + evicted)
        return new

    def _evict(self) -> int:
        """Forget the least recently used rows beyond the cap (the lock is held); how many went."""
        excess = len(self._rows) - self.max_cached_names
        for _ in range(max(0, excess)):
            self._rows.popitem(last=False)
        return max(0, excess)

    def _drop_if_weights_changed(self) -> None:
        fingerprint = self.encoder.tower.fingerprint()
        if fingerprint != self._fingerprint:
            self._rows.clear()
            self._fingerprint = fingerprint
