"""Kubernetes placement for ops: GPU only where it pays (the embedding step).

Run-level `dagster-k8s/config` tags never reach step pods under `k8s_job_executor`, so these go in
the asset's `op_tags`. The executor is chosen by environment in `definitions.py`.
"""

GPU_OP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
}
CPU_OP_TAGS = {
    "dagster-k8s/config": {"container_config": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}}
}
