"""What ``helm install`` of the zero-to-jupyterhub chart with ``helm-values/oggmhub.yaml`` puts
in the hub pod: the merged values, the chart's Secret and ConfigMap as files, ``hub.extraFiles``
at their ``mountPath``s, and the hub container's command and environment variables.

The chart's own ``files/hub/jupyterhub_config.py`` and ``z2jh.py`` are read from
``../shared/z2jh/chart`` (BSD-3) when a test runs; nothing of the chart is copied into the
repository. Templates are not rendered (no Helm here): what they would produce for the hub
pod is written out below, each piece naming the template it stands for.
"""

from __future__ import annotations

import copy
import os
import re
import secrets

import yaml

from support.paths import CATALOG, REPO, SHARED

Z2JH = SHARED / "z2jh"
CHART = Z2JH / "chart"
VALUES_FILE = REPO / "helm-values" / "oggmhub.yaml"
HUB_ETC = "/usr/local/etc/jupyterhub"  # where templates/hub/deployment.yaml mounts config and secret


def helm_merge(base, override):
    """Merge values the way Helm does: maps merge recursively, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def installed_values(*overrides, catalog=CATALOG):
    """The chart's values after ``helm install --values helm-values/oggmhub.yaml [--values
    more...] --set-file hub.extraFiles.oggmhub-catalog.stringData=<catalog>``."""
    values = yaml.safe_load((Z2JH / "values.yaml").read_text())
    values = helm_merge(values, yaml.safe_load(VALUES_FILE.read_text()))
    for override in overrides:
        values = helm_merge(values, override)
    values["hub"]["extraFiles"]["oggmhub-catalog"]["stringData"] = open(catalog).read()
    return values


def chart_version():
    """``(name, version, appVersion)`` from the chart's Chart.yaml."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart["name"], chart["version"], chart["appVersion"]


def names():
    """templates/hub/configmap.yaml's resource names (``jupyterhub.name-templates``), for
    the chart's default ``fullnameOverride: ""``: every component is named by its short name."""
    text = (CHART / "templates" / "_helpers-names.tpl").read_text()
    block = text.split('{{- define "jupyterhub.name-templates" -}}', 1)[1].split("{{- end }}", 1)[0]
    keys = re.findall(r"^([a-z-]+):", block, re.M)
    named = {key: key for key in keys}
    named.update({"fullname": "", "fullname-dash": "", "hub-existing-secret": "",
                  "hub-existing-secret-or-default": "hub"})
    return named


def secret_data(values, release="oggmhub", namespace="oggmhub"):
    """templates/hub/secret.yaml: values.yaml (with Chart and Release), the services' API
    tokens, the generated proxy token, cookie secret and CryptKeeper keys, the extraFiles."""
    name, version, app_version = chart_version()
    passed = copy.deepcopy(values)
    passed["Chart"] = {"Name": name, "Version": version, "AppVersion": app_version}
    passed["Release"] = {"Name": release, "Namespace": namespace, "Service": "Helm"}
    data = {"values.yaml": yaml.safe_dump(passed)}
    for key, service in (values["hub"].get("services") or {}).items():
        data[f"hub.services.{key}.apiToken"] = service.get("apiToken") or secrets.token_hex(32)
    data["hub.config.ConfigurableHTTPProxy.auth_token"] = secrets.token_hex(32)
    data["hub.config.JupyterHub.cookie_secret"] = secrets.token_hex(32)
    data["hub.config.CryptKeeper.keys"] = secrets.token_hex(32)
    for key, spec in (values["hub"].get("extraFiles") or {}).items():
        data[key] = spec["stringData"] if "stringData" in spec else yaml.safe_dump(spec["data"])
    return data


def hub_files(values, secret):
    """``{path in the hub container: (content, mode)}``: the chart's config files, the
    ConfigMap and Secret volumes and ``hub.extraFiles`` (templates/hub/deployment.yaml)."""
    files = {}
    for name in ("jupyterhub_config.py", "z2jh.py"):
        text = (CHART / "files" / "hub" / name).read_text()
        files[f"{HUB_ETC}/{name}"] = (text, 0o644)
        files[f"{HUB_ETC}/config/{name}"] = (text, 0o644)
    for key, value in names().items():
        files[f"{HUB_ETC}/config/{key}"] = (value, 0o644)
    for key, value in secret.items():
        files[f"{HUB_ETC}/secret/{key}"] = (value, 0o644)
    for key, spec in (values["hub"].get("extraFiles") or {}).items():
        files[spec["mountPath"]] = (secret[key], spec.get("mode", 0o644))
    return files


def hub_command(values):
    """The hub container's args (templates/hub/deployment.yaml, no hub.args override)."""
    args = ["jupyterhub", "--config", f"{HUB_ETC}/jupyterhub_config.py"]
    if values["debug"]["enabled"]:
        args.append("--debug")
    upgrade = values["hub"]["db"].get("upgrade")
    if upgrade or (upgrade is None and values["hub"]["db"]["type"] == "sqlite-pvc"):
        args.append("--upgrade-db")
    return args


def hub_env(values, secret, namespace, services):
    """The hub container's environment: the template's variables, hub.extraEnv, and what
    Kubernetes sets for each Service of the namespace (``<NAME>_SERVICE_HOST/_PORT``);
    ``services`` is ``{name: (cluster address, port)}``."""
    env = {"PYTHONUNBUFFERED": "1", "HELM_RELEASE_NAME": "oggmhub", "POD_NAMESPACE": namespace,
           "CONFIGPROXY_AUTH_TOKEN": secret["hub.config.ConfigurableHTTPProxy.auth_token"]}
    for key, value in (values["hub"].get("extraEnv") or {}).items():
        if isinstance(value, str):
            env[key] = value
    for name, (host, port) in services.items():
        prefix = name.upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = host
        env[f"{prefix}_SERVICE_PORT"] = str(port)
    return env


def chp_args(values, hub_url):
    """The proxy pod's chp container (templates/proxy/deployment.yaml, plain HTTP): its
    command from values, listening on every address of the pod (``--ip=``), api on 8001."""
    chp = values["proxy"]["chp"]
    return [*chp["command"], "--ip=", "--api-ip=", "--api-port=8001", f"--default-target={hub_url}",
            f"--error-target={hub_url}/hub/error", "--port=8000",
            *(["--log-level=debug"] if values["debug"]["enabled"] else []),
            *chp.get("extraCommandLineFlags", [])]


def write_files(root, files):
    """Write ``files`` (:func:`hub_files`) under ``root``, each at its path in the container."""
    for path, (content, mode) in files.items():
        target = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(content)
        os.chmod(target, mode)
