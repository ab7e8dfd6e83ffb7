"""GCN's boundary/internal accuracy metric (Sec. 4.1.3) against hand-counted pixels."""

import pytest
import torch

from ctxseg.cli import main
from ctxseg_gcn.boundary import BoundaryAccuracy


def test_boundary_region_is_within_width_of_a_label_change():
    target = torch.zeros(20, 20, dtype=torch.int64)
    target[:, 10:] = 1
    target[0, 0] = 255  # ignored pixels neither make nor count as boundary
    meter = BoundaryAccuracy(BoundaryAccuracy.Config(width=3), ["a", "b"])
    region = meter.boundary(target)
    assert region[:, 7:13].all() and not region[:, :7].any() and not region[:, 13:].any()

    prediction = target.clone()
    prediction[:, 9] = 1  # wrong on a column inside the boundary region
    prediction[5, 0] = 1  # wrong on one internal pixel
    meter.update(prediction, target)
    m = meter.compute()
    assert m["boundary_accuracy"] == 1 - 20 / 120
    assert m["internal_accuracy"] == 1 - 1 / 279
    assert m["boundary_fraction"] == 120 / 399


@pytest.mark.parametrize(("args", "message"), [
    (["--metric-arg", "width=7"], "expected KEY=VALUE after a --metric NAME"),
    (["--metric", "gcn.boundary", "--metric-arg", "width"], "expected KEY=VALUE"),
])
def test_metric_options_need_a_metric_and_key_value(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "weights.safetensors", *args])
    assert message in capsys.readouterr().err
