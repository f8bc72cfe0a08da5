"""Every registered head kind, by seam: scikit-learn's estimator contract (the kinds that read
vectors; the others read texts, token states or window vectors beside them), its spec parsing,
and its line in `featx train --help`. A kind added to the registry is checked here unasked."""
import pytest
from sklearn.utils.estimator_checks import check_estimator

from featx.heads import HEAD_KINDS, make_head, parse_head_spec
from tests.conftest import run_cli

VECTOR_KINDS = sorted(kind for kind, cls in HEAD_KINDS.items() if tuple(cls.reads) == ("vectors",))
QUICK = {"mlp": {"max_epochs": 40}}  # enough epochs for the contract, not for accuracy


def test_the_vector_kinds_are_the_four_plain_heads():
    assert VECTOR_KINDS == ["knn", "logreg", "mlp", "ridge"]


@pytest.mark.parametrize("kind", VECTOR_KINDS)
def test_passes_check_estimator(kind):
    check_estimator(make_head(kind, **QUICK.get(kind, {})))


@pytest.mark.parametrize("kind", sorted(HEAD_KINDS))
def test_every_scalar_parameter_round_trips_through_a_spec(kind):
    defaults = HEAD_KINDS[kind]().get_params()
    scalars = {k: v for k, v in defaults.items() if isinstance(v, (bool, int, float, str)) and v != ""}
    assert scalars, f"{kind} has no parameter a spec can set"
    for name, value in scalars.items():
        text = str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else value
        parsed_kind, params = parse_head_spec(f"{kind}:{name}={text}")
        assert parsed_kind == kind and make_head(kind, **params).get_params()[name] == value


@pytest.mark.parametrize("kind", sorted(HEAD_KINDS))
def test_is_described_in_the_train_help(capsys, kind):
    code, out, _ = run_cli(capsys, "train", "--help")
    summary = HEAD_KINDS[kind].summary
    assert code == 0 and summary and f"{kind} (" in " ".join(out.split())
    assert " ".join(summary.split()[:4]) in " ".join(out.split())
