"""Op placement on Kubernetes, from the deployment settings (rag_assets/deployment.py, deploy/settings.yaml).

Run-level `dagster-k8s/config` tags never reach step pods under `k8s_job_executor`, so an asset declares its
workload in its `op_tags` (`placement("embedding")`); the settings decide whether that means a GPU node.
`GPU_OP_TAGS` and `CPU_OP_TAGS` are the two shapes under the settings in force.
"""

from rag_assets.deployment import placement

GPU_OP_TAGS = placement("embedding")
CPU_OP_TAGS = placement("cpu")

__all__ = ["CPU_OP_TAGS", "GPU_OP_TAGS", "placement"]
