from planner.estimate.memory import weight_units
from planner.model import load_model


def test_retyped_copies_share_shape_facts_but_not_type_facts():
    m = load_model("qwen3-8b").with_types({})
    m.shape_memo["probe"] = 1
    c = m.with_types({"blk.0.ffn_down.weight": "Q8_0"})
    assert c.shape_memo is m.shape_memo and c.shape_memo["probe"] == 1
    # type-dependent facts are per copy: the re-typed tensor changes the bytes of its unit
    assert sum(u.nbytes for u in weight_units(c, frozenset())) != sum(u.nbytes for u in weight_units(m, frozenset()))


def test_a_copy_with_other_tensors_starts_afresh():
    m = load_model("qwen3-8b").with_types({})
    m.shape_memo["probe"] = 1
    fewer = m.model_copy(update={"tensors": m.tensors[:-1]})
    assert "probe" not in fewer.shape_memo and m.shape_memo["probe"] == 1
