"""The deployment harness's own pieces (tests/support/deployment), without processes: what
it writes into the chart's hub pod and how Service names become pod addresses."""

from traitlets.config import Config

from support.deployment import chart
from support.deployment.network import Network


def test_service_names_become_pod_addresses_in_the_hubs_settings():
    net = Network()
    hub, proxy = net.address(2), net.address(3)
    net.add_service("hub", hub, {8081: 8081, 10101: 10101})
    net.add_service("proxy-api", proxy, {8001: 8001})
    net.add_service("proxy-public", proxy, {80: 8000})
    assert net.resolve("http://proxy-public/services/tasks/") == f"http://{proxy}:8000/services/tasks/"
    assert net.resolve("http://hub:10101") == f"http://{hub}:10101"
    assert net.resolve("http://hubble:80/") == "http://hubble:80/"  # only whole names
    c = Config()  # as the chart's jupyterhub_config.py leaves it, then the harness's config.d file
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.JupyterHub.hub_connect_url = "http://hub:8081"
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.services = [
        {"name": "jupyterhub-idle-culler", "command": ["python3", "-m", "jupyterhub_idle_culler",
                                                       "--url=http://localhost:8081/hub/api"]},
        {"name": "tasks", "url": "http://hub:10101", "environment": {"OGGMHUB_TASKS_BIND": "0.0.0.0"}}]
    c.OGGMHubSpawner.tasks_url = "http://proxy-public/services/tasks/"
    exec(net.cluster_network_config(hub), {"c": c})
    assert c.ConfigurableHTTPProxy.api_url == f"http://{proxy}:8001"
    assert (c.JupyterHub.hub_connect_url, c.JupyterHub.hub_bind_url) == (f"http://{hub}:8081", f"http://{hub}:8081")
    culler, tasks = c.JupyterHub.services
    assert culler["command"][-1] == f"--url=http://{hub}:8081/hub/api"
    assert tasks["url"] == f"http://{hub}:10101" and tasks["environment"]["OGGMHUB_TASKS_BIND"] == hub
    assert c.OGGMHubSpawner.tasks_url == f"http://{proxy}:8000/services/tasks/"


def test_the_hub_pod_gets_the_charts_files_secret_and_extra_files():
    values = chart.installed_values()
    secret = chart.secret_data(values)
    files = chart.hub_files(values, secret)
    config = chart.HUB_ETC + "/jupyterhub_config.py"
    assert files[config][0] == (chart.CHART / "files" / "hub" / "jupyterhub_config.py").read_text()  # read, not copied
    assert files[chart.HUB_ETC + "/config/proxy-api"][0] == "proxy-api"  # fullnameOverride ""
    assert "hub.services.tasks.apiToken" in secret and len(secret["hub.config.CryptKeeper.keys"]) == 64
    catalog = values["hub"]["config"]["Catalog"]["path"]
    assert files[catalog] == (secret["oggmhub-catalog"], 0o444)  # hub.extraFiles at its mountPath
    assert chart.hub_command(values) == ["jupyterhub", "--config", config, "--upgrade-db"]  # sqlite-pvc
