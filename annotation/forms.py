from django import forms

from annotation.models import Campaign


class ImportForm(forms.Form):
    file = forms.FileField(label="JSONL file", help_text="Arbiter's format, TRL preference rows or HH transcripts.")
    format = forms.ChoiceField(
        choices=[("auto", "Detect per line"), ("arbiter", "Arbiter"), ("trl", "TRL preference"), ("hh", "Anthropic HH")],
        initial="auto",
    )


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name", "instructions", "overlap", "lease_seconds", "allow_ties", "allow_both_bad",
            "use_strength", "require_rationale",
        ]
        widgets = {"instructions": forms.Textarea(attrs={"rows": 6})}
