"""Forms of the manager's pages. They parse and label; the services decide what is valid."""

from typing import Any

from django import forms
from django.db.models import F
from django.forms import formset_factory

from annotation.core.importing import FORMATS
from annotation.core.judging import MAX_SCALE_POINTS
from annotation.models import Campaign, Dataset, Role
from annotation.services.campaigns import COPY_ITEMS

FORMAT_CHOICES = [("auto", "Detect per line"), ("arbiter", "Arbiter"), ("trl", "TRL preference"), ("hh", "Anthropic HH")]
assert [c for c, _ in FORMAT_CHOICES] == list(FORMATS)


class ImportForm(forms.Form):
    file = forms.FileField(label="JSONL file", help_text="Arbiter's format, TRL preference rows or HH transcripts.")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, initial="auto")


class ImportConfirmForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)


class CampaignForm(forms.Form):
    """A campaign's settings and schema, as the wizard, the settings page and a new version show them."""

    name = forms.CharField(max_length=200, label="Campaign name",
                           help_text="Shown to annotators at the top of the judging page.")
    kind = forms.ChoiceField(
        choices=Campaign.Kind.choices, initial=Campaign.Kind.PAIRWISE, widget=forms.RadioSelect,
        help_text="Pairwise: pick the better of two responses. Ranking: order 2–9 responses. "
                  "Rating: score 1–9 responses on each criterion.",
    )
    allow_ties = forms.BooleanField(required=False, initial=True, label="Allow ties",
                                    help_text="Pairwise: “about the same”; ranking: responses may share a place.")
    allow_both_bad = forms.BooleanField(required=False, initial=True, label="Allow “both bad”",
                                        help_text="Pairwise only.")
    use_strength = forms.BooleanField(required=False, initial=True, label="Ask how much better",
                                      help_text="Pairwise: slightly / clearly / much better.")
    require_rationale = forms.BooleanField(required=False, label="Require a rationale",
                                           help_text="Annotators must say briefly why.")
    allow_editing = forms.BooleanField(required=False, label="Allow rewriting the best response",
                                       help_text="The edited text is kept as a better reply (SFT data).")
    overlap = forms.IntegerField(min_value=1, max_value=100, initial=1, label="Overlap",
                                 help_text="Judgments wanted per item, each by a different annotator.")
    lease_seconds = forms.IntegerField(min_value=30, max_value=24 * 3600, initial=600, label="Lease time (seconds)",
                                       help_text="How long an item stays reserved for the annotator who opened it "
                                                 "(the judging page extends it while open).")
    gold_percent = forms.FloatField(min_value=0, max_value=100, initial=0, label="Gold checks (% of served items)",
                                    help_text="Share of served items drawn from the gold checks you import.")
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10}),
                                   label="Instructions for annotators",
                                   help_text="Markdown. Annotators open it with the Instructions button (I).")

    def clean_instructions(self) -> str:
        return self.cleaned_data["instructions"].replace("\r\n", "\n")  # browsers post CRLF

    @classmethod
    def initial_from(cls, campaign: Campaign) -> dict[str, Any]:
        return {
            "name": campaign.name, "kind": campaign.kind, "allow_ties": campaign.allow_ties,
            "allow_both_bad": campaign.allow_both_bad, "use_strength": campaign.use_strength,
            "require_rationale": campaign.require_rationale, "allow_editing": campaign.allow_editing,
            "overlap": campaign.overlap, "lease_seconds": campaign.lease_seconds,
            "gold_percent": round(campaign.gold_rate * 100, 2), "instructions": campaign.instructions,
        }

    def service_kwargs(self) -> dict[str, Any]:
        """Return the cleaned values as the campaign services take them (criteria not included)."""
        d = self.cleaned_data
        return {
            "name": d["name"], "kind": d["kind"], "allow_ties": d["allow_ties"], "allow_both_bad": d["allow_both_bad"],
            "use_strength": d["use_strength"], "require_rationale": d["require_rationale"],
            "allow_editing": d["allow_editing"], "overlap": d["overlap"], "lease_seconds": d["lease_seconds"],
            "gold_rate": round(d["gold_percent"] / 100, 6), "instructions": d["instructions"],
        }


# Form fields a service error may name, mapped to the form field that shows it.
SERVICE_FIELD = {"gold_rate": "gold_percent"}


class CriterionForm(forms.Form):
    """One criterion: a name, a label, a description and (for ratings) a scale with end labels."""

    name = forms.RegexField(
        regex=r"^[a-z0-9_]{1,40}$", max_length=40,
        error_messages={"invalid": "Use 1–40 lowercase letters, digits or _ (e.g. helpfulness)."},
        help_text="Lowercase id, e.g. helpfulness.",
    )
    label = forms.CharField(max_length=100, required=False, help_text="Shown to annotators.")
    description = forms.CharField(max_length=500, required=False)
    scale_min = forms.IntegerField(initial=1, label="Scale from", min_value=-100, max_value=100)
    scale_max = forms.IntegerField(initial=5, label="Scale to", min_value=-100, max_value=100)
    low_label = forms.CharField(max_length=60, required=False, label="Lowest point means",
                                help_text="e.g. Poor")
    high_label = forms.CharField(max_length=60, required=False, label="Highest point means",
                                 help_text="e.g. Excellent")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        low, high = data.get("scale_min"), data.get("scale_max")
        if low is not None and high is not None:
            if low >= high:
                self.add_error("scale_max", "Must be larger than “Scale from”.")
            elif high - low + 1 > MAX_SCALE_POINTS:
                self.add_error("scale_max", f"A scale has at most {MAX_SCALE_POINTS} points.")
        return data

    def as_criterion(self) -> dict[str, Any]:
        d = self.cleaned_data
        labels = {}
        if d.get("low_label"):
            labels[str(d["scale_min"])] = d["low_label"]
        if d.get("high_label"):
            labels[str(d["scale_max"])] = d["high_label"]
        return {"name": d["name"], "label": d.get("label") or "", "description": d.get("description") or "",
                "scale": {"min": d["scale_min"], "max": d["scale_max"], "labels": labels}}

    @staticmethod
    def initial_from(criterion: dict[str, Any]) -> dict[str, Any]:
        scale = criterion.get("scale") or {}
        labels = scale.get("labels") or {}
        low, high = scale.get("min", 1), scale.get("max", 5)
        return {"name": criterion.get("name", ""), "label": criterion.get("label", ""),
                "description": criterion.get("description", ""), "scale_min": low, "scale_max": high,
                "low_label": labels.get(str(low), ""), "high_label": labels.get(str(high), "")}


CriterionFormSet = formset_factory(CriterionForm, extra=0, can_delete=True, max_num=12, validate_max=True)


def criteria_from(formset) -> list[dict[str, Any]]:
    """Return the criteria of a valid formset, rows marked for removal left out."""
    return [f.as_criterion() for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]


class NewVersionForm(forms.Form):
    copy_items = forms.ChoiceField(
        choices=list(COPY_ITEMS.items()), initial="unjudged", widget=forms.RadioSelect,
        label="Items to carry over",
        help_text="Judged items keep their judgments in this version, which is closed; gold checks always come along.",
    )


class CloseIntoDatasetForm(forms.Form):
    method = forms.ChoiceField(
        choices=Dataset.Method.choices, initial=Dataset.Method.DAWID_SKENE, label="Aggregation method",
        help_text="Majority counts votes; Dawid–Skene and reliability weighting trust reliable annotators more.",
    )


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    cap = forms.IntegerField(min_value=1, required=False, label="Cap (judgments)",
                             help_text="Empty: no cap.")


class MemberCapForm(forms.Form):
    cap = forms.IntegerField(min_value=1, required=False, label="Cap")


INVITE_LIFETIMES = [("1", "1 hour"), ("24", "1 day"), ("168", "7 days"), ("720", "30 days")]


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    expires_in = forms.TypedChoiceField(choices=INVITE_LIFETIMES, coerce=int, initial="168", label="Valid for")
    max_uses = forms.IntegerField(min_value=1, required=False, label="Most uses",
                                  help_text="Empty: anyone with the link, until it expires.")
    cap = forms.IntegerField(min_value=1, required=False, label="Cap for who joins",
                             help_text="Empty: no cap.")


# The items page's filter ("show"), shared by the page and the API.
ITEM_FILTERS = {
    "all": ("All items", {}),
    "open": ("Still wanted", {"is_gold": False, "judgment_count__lt": F("target")}),
    "judged": ("Judged", {"judgment_count__gte": 1}),
    "gold": ("Gold checks", {"is_gold": True}),
}
ITEMS_PER_PAGE = 20
AUDIT_PER_PAGE = 50
