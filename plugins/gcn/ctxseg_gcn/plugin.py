"""Hook implementations of the ctxseg-gcn plugin (published as entry point ``gcn``).

Only records here, no torch import: ``ctxseg plugins`` lists components without
loading any model code. The boundary/internal accuracy of Table 5 is the metric
``gcn.boundary`` (``ctxseg eval --metric gcn.boundary --metric-arg width=7``).
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "context_head", "gcn.global_convolution", "ctxseg_gcn.global_convolution:GlobalConvolution",
            "GCN block: (k x 1 then 1 x k) + (1 x k then k x 1) convs, no nonlinearity, to class score maps",
            example={"kernel": 5},
        ),
        Component(
            "fusion", "gcn.fusion", "ctxseg_gcn.fusion:GCNFusion",
            "GCN pipeline: GCN + BR per stage, 2x deconvolution + sum + BR coarse to fine, scores at stride 1",
            example={"kernel": 5, "refine": True},
        ),
        Component(
            "backbone", "gcn.resnet", "ctxseg_gcn.resnet:ResNetGCN",
            "ResNet-GCN: ResNet-50/101/152 whose res-4/res-5 bottlenecks start with a GCN module (BN + ReLU)",
            example={"depth": 50, "output_stride": 8, "widths": [8, 8]},
        ),
        Component(
            "metric", "gcn.boundary", "ctxseg_gcn.boundary:BoundaryAccuracy",
            "pixel accuracy within `width` px of a label boundary and beyond it (Table 5; the paper: 7 px)",
            example={"width": 2},
        ),
    ]
