"""jobflow flows: graphs → train → predict → evaluate, with provenance; specs, local runs, resume, submission."""

from perovdb.flows.inputs import DatasetQuery, StructureQuery
from perovdb.flows.makers import (
    EvaluateMaker,
    GraphsMaker,
    MultiFidelityFlowMaker,
    PredictMaker,
    PropertyFlowMaker,
    SplitMaker,
    TrainMaker,
)
from perovdb.flows.runner import (
    FlowState,
    flow_state,
    job_store,
    list_flows,
    rerun_flow,
    run_flow,
    submit_flow,
)
from perovdb.flows.spec import WorkflowSpec

__all__ = [
    "DatasetQuery",
    "EvaluateMaker",
    "FlowState",
    "GraphsMaker",
    "MultiFidelityFlowMaker",
    "PredictMaker",
    "PropertyFlowMaker",
    "SplitMaker",
    "StructureQuery",
    "TrainMaker",
    "WorkflowSpec",
    "flow_state",
    "job_store",
    "list_flows",
    "rerun_flow",
    "run_flow",
    "submit_flow",
]
