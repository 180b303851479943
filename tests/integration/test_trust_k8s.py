"""Refused spawn requests leave no trace on the Kubernetes backend too (issue 14, F2/F5),
against kmock: OGGMHubSpawner with a real JupyterHub database row for its options.

JupyterHub stores a request's options in ``orm.Spawner.user_options`` and commits before
the spawner sees them; a refusal must put the previous ones back, store nothing large,
and create nothing in Kubernetes.
"""

import pytest
from jupyterhub import orm
from tornado import web

from support.kube_harness.oggmhub import oggmhub_spawner

FAST = dict(k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=10)


def real_orm_spawner(name="mallory"):
    db = orm.new_session_factory("sqlite:///:memory:")()
    user = orm.User(name=name)
    db.add(user)
    db.commit()
    row = orm.Spawner(user=user, name="")
    db.add(row)
    db.commit()
    return db, row


async def jupyterhub_spawn(spawner, db, options):
    """What JupyterHub's User.spawn does with a request's options: store, commit, apply."""
    spawner.orm_spawner.user_options = options
    db.commit()
    spawner.user_options = options
    await spawner._run_apply_user_options(spawner.user_options)


@pytest.mark.parametrize("bad, message", [
    ({"profile": "oggm", "image": "attacker/root"}, "unknown server option 'image'"),
    ({"profile": ""}, "the environment is empty; choose one of: oggm, slicer, fiji"),
    ({"profile": "p" * 1_000_000}, "server option 'profile' is too long"),
])
async def test_a_refused_request_restores_the_previous_options_and_creates_nothing(api, kubelet, bad, message):
    db, row = real_orm_spawner()
    spawner = oggmhub_spawner("mallory", orm_spawner=row, **FAST)
    await jupyterhub_spawn(spawner, db, {"profile": "fiji"})
    good = dict(row.user_options)
    assert good == {"profile": "fiji", "size": "medium", "gpu": "none", "datasets": []}
    with pytest.raises(web.HTTPError) as info:
        await jupyterhub_spawn(spawner, db, bad)
    assert info.value.status_code == 400 and message in info.value.jupyterhub_message
    assert len(info.value.jupyterhub_message) < 500
    db.expire_all()
    assert row.user_options == good and spawner.user_options == good  # nothing replayed
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")] == []
