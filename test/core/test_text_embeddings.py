"""Text-classifier rows: parity with the official fixtures, packed encoding vs encode_text, caching."""
from __future__ import annotations

import json
import threading

import pytest
import torch
from open_clip.model import CLIP

from fcclip_core.text_embeddings import (PromptEncoder, TextEmbeddingCache, name_embeddings,
                                         pack_prompt_tree)
from fcclip_core.vocabulary import PROMPT_TEMPLATES, parse_vocabulary

VARIANTS = {"tiny": "convnext_fcref_tiny_d", "rn_tiny": "RNfcref_tiny"}
CLIP_PREFIX = "backbone.clip_model."


def text_model(reference_root, variant: str) -> CLIP:
    """An open_clip CLIP with the fixture's text tower and weights (and a throw-away vision tower)."""
    config = json.loads((reference_root / variant / "_open_clip_cfg" / f"{VARIANTS[variant]}.json").read_text())
    model = CLIP(embed_dim=config["embed_dim"], text_cfg=config["text_cfg"],
                 vision_cfg=dict(layers=1, width=32, head_width=32, patch_size=16, image_size=32),
                 quick_gelu=config.get("quick_gelu", False)).eval()
    weights = torch.load(reference_root / variant / "weights.pth", weights_only=True)
    text_weights = {k[len(CLIP_PREFIX):]: v for k, v in weights.items()
                    if k.startswith(CLIP_PREFIX) and not k.startswith(CLIP_PREFIX + "visual.")}
    result = model.load_state_dict(text_weights, strict=False)
    assert not result.unexpected_keys
    assert all(key.startswith("visual.") for key in result.missing_keys)
    return model


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def fixture(request, reference_root):
    variant = request.param
    expected = torch.load(reference_root / variant / "expected.pt", weights_only=variant == "tiny")
    vocab = json.loads((reference_root / variant / "vocab.json").read_text())
    vocabulary = parse_vocabulary(vocab["stuff_classes"], isthing=vocab["isthing"])
    return text_model(reference_root, variant), expected, vocab, vocabulary


@pytest.fixture(scope="module")
def tiny_model(reference_root):
    return text_model(reference_root, "tiny")


def full_length_features(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode_text(tokens)


# --- parity with the official outputs -------------------------------------------------------------


def test_tokens_equal_the_official_tokens(fixture):
    model, expected, _, vocabulary = fixture
    tokens = PromptEncoder(model).tokenize(vocabulary.prompts())
    assert torch.equal(tokens, expected["text"]["tokens"])


def test_raw_features_match_the_official_ones(fixture):
    model, expected, _, vocabulary = fixture
    raw = TextEmbeddingCache(model).encode_prompts(vocabulary.prompts())
    torch.testing.assert_close(raw, expected["text"]["raw_text_features"], rtol=0, atol=1e-5)


def test_classifier_rows_and_seen_match_the_official_ones(fixture):
    model, expected, vocab, vocabulary = fixture
    result = TextEmbeddingCache(model).embed(vocabulary)
    torch.testing.assert_close(result.embeddings, expected["text"]["text_classifier"], rtol=0, atol=2e-6)
    assert list(result.synonym_counts) == expected["text"]["num_templates"] == vocab["num_templates_per_class"]
    assert result.seen.dtype == torch.int64
    assert result.seen.tolist() == expected["category_overlapping_mask"].tolist()
    assert result.embeddings.dtype == torch.float32 and not result.embeddings.is_inference()
    assert result.vocabulary == vocabulary


def test_name_embeddings_is_the_official_average(fixture):
    _, expected, _, _ = fixture
    rows = name_embeddings(expected["text"]["raw_text_features"], len(PROMPT_TEMPLATES))
    torch.testing.assert_close(rows, expected["text"]["text_classifier"], rtol=0, atol=1e-7)


# --- packed encoding equals the full-length encode_text -------------------------------------------


PROMPTS = [
    "a photo of a cat.", "a photo of a cat in the scene", "a photo of a cats.", "a", "",
    "There is a small red panda in the scene.", "This is a photo of a large zebra crossing.",
    "a photo of a " + " ".join(["very"] * 60) + " long thing.",
]


@pytest.mark.parametrize("tokens_per_pass", [77, 160, 4096])
def test_packed_encoding_equals_full_length_encode_text(fixture, tokens_per_pass):
    model = fixture[0]
    prompts = fixture[3].prompts() + PROMPTS
    encoder = PromptEncoder(model, tokens_per_pass=tokens_per_pass)
    assert encoder.tower.packable
    packed, positions, passes = encoder.encode(prompts)
    tokens = encoder.tokenize(prompts)
    full = full_length_features(model, tokens)
    torch.testing.assert_close(packed, full, rtol=0, atol=1e-5)
    assert positions < int((tokens.argmax(-1) + 1).sum()) < tokens.numel()  # shared prefixes, no padding
    assert passes >= 1


def test_a_prompt_that_fills_the_context_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="too long"):
        PromptEncoder(tiny_model).encode(["a photo of a " + " ".join(["very"] * 80) + " long thing."])


def test_towers_without_a_causal_mask_run_at_full_length():
    config = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1, no_causal_mask=True,
                  pool_type="last")
    model = CLIP(embed_dim=16, text_cfg=config,
                 vision_cfg=dict(layers=1, width=32, head_width=32, patch_size=16, image_size=32)).eval()
    encoder = PromptEncoder(model, tokens_per_pass=200)
    assert not encoder.tower.packable
    features, positions, passes = encoder.encode(PROMPTS[:5])
    tokens = encoder.tokenize(PROMPTS[:5])
    torch.testing.assert_close(features, full_length_features(model, tokens), rtol=0, atol=1e-6)
    assert (positions, passes) == (5 * 77, 3)


# --- the prefix tree ------------------------------------------------------------------------------


def test_pack_prompt_tree_shares_prefixes_and_respects_the_size():
    sequences = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3], [6, 7, 8, 9], [1, 2]]
    (pack,) = pack_prompt_tree(sequences, max_tokens=100)
    distinct_prefixes = {tuple(s[:i]) for s in sequences for i in range(1, len(s) + 1)}
    assert len(pack.tokens) == len(distinct_prefixes) == 9
    for index, node in pack.outputs:  # walking up from each output spells its sequence
        path = []
        while node >= 0:
            path.append(pack.tokens[node])
            assert len(path) - 1 + pack.positions[node] == len(sequences[index]) - 1
            node = pack.parents[node]
        assert path[::-1] == sequences[index]
    assert sorted(index for index, _ in pack.outputs) == list(range(len(sequences)))
    packs = pack_prompt_tree(sequences, max_tokens=4)
    assert all(len(p.tokens) <= 4 for p in packs) and len(packs) > 1
    assert sorted(i for p in packs for i, _ in p.outputs) == list(range(len(sequences)))
    with pytest.raises(ValueError, match="longest prompt"):
        pack_prompt_tree(sequences, max_tokens=3)


def test_pack_attention_mask_lets_each_token_see_its_ancestors_only():
    (pack,) = pack_prompt_tree([[1, 2, 3], [1, 4]], max_tokens=10)
    mask = pack.attention_mask(torch.float32, torch.device("cpu"))
    visible = (mask == 0).int().tolist()
    # nodes: 0 = [1], 1 = [1,2], 2 = [1,2,3], 3 = [1,4]
    assert visible == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1]]
    assert torch.isneginf(mask[mask != 0]).all()


# --- caching --------------------------------------------------------------------------------------


def test_second_call_encodes_nothing(fixture):
    model, _, _, vocabulary = fixture
    cache = TextEmbeddingCache(model)
    first = cache.embed(vocabulary)
    after_first = cache.stats
    second = cache.embed(vocabulary)
    after_second = cache.stats
    assert after_first.names_encoded == len(set(vocabulary.names))
    assert after_first.prompts_encoded == 14 * len(set(vocabulary.names))
    assert after_second.prompts_encoded == after_first.prompts_encoded
    assert after_second.names_from_cache == len(set(vocabulary.names))
    assert torch.equal(first.embeddings, second.embeddings)


def test_only_new_names_are_encoded(tiny_model):
    cache = TextEmbeddingCache(tiny_model)
    cache.embed(parse_vocabulary(["cat,cats,kitty", "sky,clouds"]))
    before = cache.stats.prompts_encoded
    # "kitten" and "mug" are new; "cat", "kitty", "sky" are cached even though the classes differ
    shared = parse_vocabulary(["cat,kitty,kitten", "mug", "sky"])
    result = cache.embed(shared)
    assert cache.stats.prompts_encoded - before == 2 * len(PROMPT_TEMPLATES)
    fresh = TextEmbeddingCache(tiny_model).embed(shared)
    torch.testing.assert_close(result.embeddings, fresh.embeddings, rtol=0, atol=1e-6)
    assert result.synonym_counts == (3, 1, 1)


def test_cache_forgets_the_least_recently_used_names_beyond_its_cap(tiny_model):
    cache = TextEmbeddingCache(tiny_model, max_cached_names=3)
    first = cache.embed(parse_vocabulary(["cat", "dog"]))
    cache.embed(parse_vocabulary(["mug"]))
    cache.embed(parse_vocabulary(["cat"]))  # cat is used again: dog is now the oldest
    cache.embed(parse_vocabulary(["tree"]))
    assert "dog" not in cache and {"cat", "mug", "tree"} == {n for n in ("cat", "mug", "tree") if n in cache}
    stats = cache.stats
    assert (stats.cached_names, stats.max_cached_names, stats.evicted_names) == (3, 3, 1)
    # A vocabulary larger than the cap is still embedded whole; the cache keeps its last names.
    big = cache.embed(parse_vocabulary(["a", "b", "c", "d", "dog"]))
    assert big.embeddings.shape[0] == 5 and cache.stats.cached_names == 3
    torch.testing.assert_close(big.embeddings[4], first.embeddings[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_cached_names"):
        TextEmbeddingCache(tiny_model, max_cached_names=0)


def test_abort_stops_a_running_encoding_between_passes(tiny_model):
    from fcclip_core.text_embeddings import EncodingCancelled

    cache = TextEmbeddingCache(tiny_model)
    cache.embed(parse_vocabulary(["cat"]))
    passes = []
    run_pack = cache.encoder._run_pack

    def counting(pack):
        passes.append(pack)
        if len(passes) == 2:
            cache.abort()  # as another thread would, while the encoding runs
        return run_pack(pack)

    cache.encoder._run_pack = counting
    with pytest.raises(EncodingCancelled):
        cache.embed(parse_vocabulary([f"object number {i}" for i in range(300)]))
    assert len(passes) == 2, "the encoding stopped at the pass after the abort"
    assert cache.embed(parse_vocabulary(["cat"])).embeddings.shape[0] == 1  # cached rows still answer


def test_repeated_names_are_encoded_once(tiny_model):
    cache = TextEmbeddingCache(tiny_model)
    result = cache.embed(parse_vocabulary(["bag,bag,sack", "handbag,bag"]))
    assert cache.stats.names_encoded == 3
    assert result.embeddings.shape[0] == 5
    assert torch.equal(result.embeddings[0], result.embeddings[1])
    assert torch.equal(result.embeddings[0], result.embeddings[4])


def test_cache_empties_when_the_weights_change(reference_root):
    model = text_model(reference_root, "tiny")
    cache = TextEmbeddingCache(model)
    vocabulary = parse_vocabulary(["cat", "dog"])
    before = cache.embed(vocabulary).embeddings
    with torch.no_grad():
        model.ln_final.bias.add_(0.5)
    after = cache.embed(vocabulary).embeddings
    assert cache.stats.names_encoded == 4
    assert not torch.allclose(before, after)
    model.double()  # a cast replaces every tensor: encode again, in the new dtype
    in_double = cache.embed(vocabulary).embeddings
    assert cache.stats.names_encoded == 6 and in_double.dtype == torch.float32
    torch.testing.assert_close(in_double, after, rtol=0, atol=1e-5)
    cache.clear()
    assert "cat" not in cache and cache.stats.cached_names == 0


def test_concurrent_calls_encode_each_name_once(tiny_model):
    cache = TextEmbeddingCache(tiny_model)
    vocabulary = parse_vocabulary([f"thing number {i}" for i in range(40)])
    results, barrier = [], threading.Barrier(3)

    def worker():
        barrier.wait()
        results.append(cache.embed(vocabulary))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.stats.names_encoded == 40
    assert all(torch.equal(r.embeddings, results[0].embeddings) for r in results)


def test_bad_templates_are_rejected(tiny_model):
    with pytest.raises(ValueError, match="'{}'"):
        TextEmbeddingCache(tiny_model, templates=("a photo",))
    with pytest.raises(ValueError, match="context length"):
        TextEmbeddingCache(tiny_model, tokens_per_pass=10)
