"""benchmarks/fuzz_inputs.py: its mutation generator is deterministic per (seed, index) and flags
the truncations that lost image data. No model is loaded."""
import runpy

import pytest

fz = runpy.run_path("benchmarks/fuzz_inputs.py")


@pytest.fixture(scope="module")
def bases():
    return fz["load_bases"]()


def test_bases_layout(bases):
    assert len(bases) == 28
    for b in bases:
        assert 0 < b.header_end < b.end <= len(b.data), b.name
        if b.fmt.startswith("jpeg"):
            assert b.data[b.end:b.end + 2] == b"\xff\xd9"
        if b.fmt == "png":
            assert b.data[b.end + 4:b.end + 8] == b"IEND"


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_same_seed_same_bytes(bases, seed):
    make = fz["make_case"]
    a = [make(bases, seed, i) for i in range(60)]
    b = [make(bases, seed, i) for i in reversed(range(60))][::-1]  # any order: each case stands alone
    assert [(c.kind, c.params, c.data, c.truncated) for c in a] == [(c.kind, c.params, c.data, c.truncated) for c in b]
    other = [make(bases, seed + 100, i).data for i in range(60)]
    assert other != [c.data for c in a]
    assert len({c.kind for c in a}) >= 5


def test_truncated_cases_flagged(bases):
    make = fz["make_case"]
    by = {b.name: b for b in bases}
    cases = [c for seed in (0, 1, 2) for c in (make(bases, seed, i) for i in range(150)) if c.kind == "truncate"]
    assert sum(c.truncated for c in cases) >= 20
    for c in cases:
        b, cut = by[c.base], c.params["cut"]
        assert c.truncated == (cut < b.end)
        assert c.data == b.data[:cut] + (b.marker if c.params["append_marker"] else b"")
        assert (c.lost is not None) == c.truncated
    assert not any(c.truncated for seed in (0, 1) for i in range(150) if (c := make(bases, seed, i)).kind != "truncate")
