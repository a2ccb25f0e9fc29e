"""The real control plane of tests/kubernetes, reused here (cluster name: $JUPYTER_EXT_K8S_TEST_CLUSTER)."""

from tests.kubernetes.conftest import k8s_cluster  # noqa: F401  (a session fixture, started only if asked for)
