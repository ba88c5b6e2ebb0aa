"""Re-evaluate a variant when its index changes, and record the models of a new variant."""

import dagster as dg

evaluation_sensor = dg.AutomationConditionSensorDefinition(
    "evaluation_sensor",
    target=dg.AssetSelection.groups("evaluation", "models") - dg.AssetSelection.assets("experiment_report"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    use_user_code_server=True,  # `evaluation`'s condition reads sources.yaml (which sources have labels)
    description="Evaluates the `evaluation` and `models` groups' automation conditions: a (source, variant) is evaluated "
    "again (and its regression check run) once an ingestion run changed its index; a new variant's model cards are recorded.",
)
