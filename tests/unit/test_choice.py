"""Choice validation shared by both backends: what is allowed, and what each refusal says."""

import pytest

from oggmhub.choice import ChoiceError, options_from_form, profile_list, resolve_choice


def test_empty_options_start_the_default_environment_at_its_default_size(catalog):
    choice = resolve_choice(catalog, {})
    assert choice.user_options == {"profile": "oggm", "size": "small", "gpu": "none", "datasets": []}
    assert [d.name for d in choice.datasets] == ["oggm-mirror"]  # the environment's own


def test_a_full_choice_resolves_to_catalog_objects(catalog):
    choice = resolve_choice(catalog, {"profile": "slicer", "size": "large", "gpu": "t4"})
    assert choice.environment.name == "slicer"
    assert choice.size.cpu_limit == 4
    assert choice.gpu.count == 1
    assert choice.describe() == "3D Slicer, Large (4 CPU, 16 GB), 1 NVIDIA T4"


@pytest.mark.parametrize(
    "options, field, message",
    [
        ({"profile": "matlab"}, "profile", "unknown environment 'matlab'; choose one of: oggm, slicer, fiji"),
        ({"profile": "oggm", "size": "huge"}, "size", "size 'huge' is not offered for OGGM; choose one of: small, medium, large"),
        ({"profile": "fiji", "size": "large"}, "size", "size 'large' is not offered for Fiji; choose one of: small, medium"),
        ({"profile": "oggm", "gpu": "t4"}, "gpu", "GPU variant 't4' is not offered for OGGM; choose one of: none"),
        ({"profile": "slicer", "gpu": "a100"}, "gpu", "GPU variant 'a100' is not offered for 3D Slicer; choose one of: none, t4"),
        ({"profile": "oggm", "image": "evil/root"}, "image", "unknown server option 'image'; allowed options: profile, size, gpu"),
        ({"profile": ["oggm"]}, "profile", "server option 'profile' must be a string, not list"),
        (["oggm"], "options", "server options must be a JSON object"),
    ],
)
def test_refusals_name_the_field_and_what_is_allowed(catalog, options, field, message):
    with pytest.raises(ChoiceError) as info:
        resolve_choice(catalog, options)
    assert info.value.status_code == 400
    assert info.value.field == field
    assert message in str(info.value)
    assert info.value.jupyterhub_message == str(info.value)


def test_allowed_environments_narrow_the_catalog(catalog):
    with pytest.raises(ChoiceError, match="unknown environment 'slicer'; choose one of: fiji"):
        resolve_choice(catalog, {"profile": "slicer"}, allowed_environments={"fiji"})
    assert resolve_choice(catalog, {}, allowed_environments={"fiji"}).environment.name == "fiji"
    assert [p["slug"] for p in profile_list(catalog, {"fiji"})] == ["fiji"]


def form(**fields):
    return {"_xsrf": ["token"], **{k.replace("_", "-"): [v] for k, v in fields.items()}}


def all_selects(**chosen):
    """What kubespawner's picker posts: every environment's selects, plus the radio."""
    data = {"_xsrf": ["t"]}
    for env in ("oggm", "slicer", "fiji"):
        data[f"profile-option-{env}--size"] = [{"oggm": "small", "slicer": "medium", "fiji": "medium"}[env]]
    data["profile-option-slicer--gpu"] = ["none"]
    data["profile-option-fiji--gpu"] = ["none"]
    data.update({k: [v] for k, v in chosen.items()})
    return data


def test_form_data_from_the_picker(catalog):
    data = all_selects(profile="slicer", **{"profile-option-slicer--size": "large", "profile-option-slicer--gpu": "t4"})
    assert options_from_form(catalog, data) == {"profile": "slicer", "size": "large", "gpu": "t4", "datasets": []}
    data = all_selects(profile="oggm")
    assert options_from_form(catalog, data) == {"profile": "oggm", "size": "small", "gpu": "none", "datasets": []}
    data["datasets"] = ["oggm-mirror"]  # a checkbox: may be sent for any environment
    data["profile"] = ["fiji"]
    assert options_from_form(catalog, data)["datasets"] == ["oggm-mirror"]


def test_users_may_add_catalog_datasets(catalog):
    choice = resolve_choice(catalog, {"profile": "fiji", "datasets": ["oggm-mirror"]})
    assert [d.name for d in choice.datasets] == ["idr-nuclei-3d", "oggm-mirror"]  # Fiji's own, then the added
    assert choice.user_options["datasets"] == ["oggm-mirror"]
    # adding one the environment mounts anyway changes nothing
    assert resolve_choice(catalog, {"profile": "oggm", "datasets": ["oggm-mirror"]}).extra_datasets == ()
    with pytest.raises(ChoiceError, match="unknown dataset 'era6'; choose from: oggm-mirror"):
        resolve_choice(catalog, {"profile": "fiji", "datasets": ["era6"]})
    with pytest.raises(ChoiceError, match="'datasets' must be a list of dataset names"):
        resolve_choice(catalog, {"profile": "fiji", "datasets": "oggm-mirror"})


@pytest.mark.parametrize(
    "data, message",
    [
        (all_selects(), "choose an environment: one of oggm, slicer, fiji"),
        (all_selects(profile="nope"), "unknown environment 'nope'"),
        ({"profile": ["fiji"], "profile-option-fiji--gpu": ["none"]}, "the form sent no size for Fiji"),
        ({"profile": ["slicer"], "profile-option-slicer--size": ["medium"]}, "the form sent no gpu for 3D Slicer"),
        (all_selects(profile="oggm", **{"profile-option-oggm--size": "xxl"}), "size 'xxl' is not offered for OGGM"),
        ({**all_selects(profile="oggm"), "profile": ["oggm", "fiji"]}, "the form sent 2 values for 'profile'"),
        (all_selects(profile="oggm", image="evil/root"), "unexpected form field 'image'"),
        (all_selects(profile="oggm", **{"profile-option-oggm--cmd": "sh"}), "unexpected form field 'profile-option-oggm--cmd'"),
    ],
)
def test_tampered_or_missing_form_values_are_refused(catalog, data, message):
    with pytest.raises(ChoiceError) as info:
        options_from_form(catalog, data)
    assert message in str(info.value)


def test_profile_list_is_the_catalog_for_kubespawners_picker(catalog):
    profiles = profile_list(catalog)
    assert [p["slug"] for p in profiles] == ["oggm", "slicer", "fiji"]
    oggm, slicer = profiles[0], profiles[1]
    assert oggm["default"] and not slicer["default"]
    assert list(oggm["profile_options"]) == ["size"]
    assert oggm["profile_options"]["size"]["choices"]["small"]["default"]
    assert list(slicer["profile_options"]["gpu"]["choices"]) == ["none", "t4"]
    assert all("kubespawner_override" not in p for p in profiles)
