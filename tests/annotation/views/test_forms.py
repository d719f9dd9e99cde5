"""form_apply_error: a service's error lands on the form field it names, or above the form."""

from django import forms

from annotation.errors import ApplicationError, field_error
from annotation.views.campaigns import SERVICE_FIELD, CampaignForm, criteria_formset
from annotation.views.forms import form_apply_error
from annotation.views.people import MemberAddForm


class RunForm(forms.Form):
    learning_rate = forms.FloatField()
    source = forms.CharField()
    dataset_params = forms.CharField()


def _errors(form: forms.Form) -> dict:
    return {k: list(v) for k, v in form.errors.items()}


def test_the_named_field_gets_the_message_without_its_name():
    """A field error shows on that field, reading "is required", not "username: is required"."""
    form = MemberAddForm({"username": "x", "role": "annotator"})
    form.is_valid()
    form_apply_error(form, field_error("username", "is required"))
    assert _errors(form) == {"username": ["is required"]}


def test_config_prefix_renames_and_roots_find_the_form_field():
    """`config.x` shows on x; a renamed name on the form's own field; `parent.child` on parent."""
    cases = [
        (field_error("config.learning_rate", "must be > 0"), {}, {"learning_rate": ["must be > 0"]}),
        (field_error("dataset_id", "not found"), {"dataset_id": "source"}, {"source": ["not found"]}),
        (field_error("dataset_params.bootstrap_rounds", "too many"), {}, {"dataset_params": ["too many"]}),
        (field_error("gpus", "must be 0 to 8"), {}, {"__all__": ["gpus: must be 0 to 8"]}),
    ]
    for exc, renames, expected in cases:
        form = RunForm({"learning_rate": "1", "source": "s", "dataset_params": "p"})
        form.is_valid()
        form_apply_error(form, exc, renames=renames)
        assert _errors(form) == expected, exc.message


def test_an_error_naming_several_fields_or_none_goes_above_the_form():
    """Without exactly one named field the whole message shows above the form."""
    for exc in (
        ApplicationError("kind, criteria: cannot change after judging", extra={"fields": {"kind": [], "criteria": []}}),
        ApplicationError("The campaign is closed."),
    ):
        form = RunForm({"learning_rate": "1", "source": "s", "dataset_params": "p"})
        form.is_valid()
        form_apply_error(form, exc)
        assert _errors(form) == {"__all__": [exc.message]}


def test_a_criteria_row_error_goes_on_that_row_and_a_disabled_field_above_the_form():
    """`criteria[1].name: ...` marks the second kept row; gold_rate shows on gold_percent unless disabled."""
    data = {"criteria-TOTAL_FORMS": "2", "criteria-INITIAL_FORMS": "0"}
    for k in range(2):
        data |= {f"criteria-{k}-name": f"c{k}", f"criteria-{k}-scale_min": "1", f"criteria-{k}-scale_max": "5"}
    criteria = criteria_formset(data)
    assert criteria.is_valid()
    form = CampaignForm({})
    form.is_valid()
    exc = ApplicationError("criteria[1].name: is taken", extra={"fields": {"criteria": ["is taken"]}})
    form_apply_error(form, exc, renames=SERVICE_FIELD, formset=criteria)
    assert list(criteria.forms[1].non_field_errors()) == ["is taken"]
    assert not criteria.forms[0].errors

    form = CampaignForm({"gold_percent": "5"})
    form.is_valid()
    form_apply_error(form, field_error("gold_rate", "must be at most 1"), renames=SERVICE_FIELD)
    assert form.errors["gold_percent"] == ["must be at most 1"]
    form = CampaignForm({"gold_percent": "5"})
    form.fields["gold_percent"].disabled = True
    form.is_valid()
    form_apply_error(form, field_error("gold_rate", "must be at most 1"), renames=SERVICE_FIELD)
    assert form.errors["__all__"] == ["gold_rate: must be at most 1"]
