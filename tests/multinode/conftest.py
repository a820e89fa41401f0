import pytest


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head and one worker node (1 CPU each) from ``ray.cluster_utils.Cluster``, driver connected;
    the head offers the custom resource ``trainer``, the worker ``rollout`` (placement tests)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("a session-wide ray.init is active: run multinode tests in their own pytest process")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                              "resources": {"trainer": 1}})
    cluster.add_node(num_cpus=1, resources={"rollout": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield cluster
    ray.shutdown()
    cluster.shutdown()
