"""What every page's forms share: a service's error shown where the user can fix it."""

from django import forms

from annotation.errors import ApplicationError


def form_apply_error(
    form: forms.Form,
    exc: ApplicationError,
    *,
    renames: dict[str, str] | None = None,
    formset: forms.BaseFormSet | None = None,
) -> None:
    """Show a service error on the form field it names, or above the form.

    The field is the one `exc.extra["fields"]` names, when it names exactly one: `config.` is
    dropped (`config.learning_rate` -> learning_rate), `renames` maps the service's name to the
    form's (gold_rate -> gold_percent), and a name the form lacks falls back to its root
    (`dataset_params.bootstrap_rounds` -> dataset_params). The field's error reads without the
    "field: " the message starts with. An error about row k of `formset` (a message starting
    "<prefix>[k]") goes on that row. A disabled field cannot be corrected, so its error goes
    above the form, with everything else, in full.
    """
    named = list(exc.extra.get("fields") or {})
    if len(named) != 1:
        form.add_error(None, exc.message)
        return
    raw = named[0]
    name = raw.removeprefix("config.")
    name = (renames or {}).get(name, name)
    if name not in form.fields:
        name = name.split("[", 1)[0].split(".", 1)[0]
    head, _, detail = exc.message.partition(": ")
    if not (detail and raw in (head, head.split("[", 1)[0].split(".", 1)[0])):
        detail = exc.message
    if formset is not None and name == formset.prefix:
        index = _row_index(exc.message, formset.prefix)
        kept = [f for f in formset.forms if not (f.cleaned_data or {}).get("DELETE")]
        if index is not None and index < len(kept):
            kept[index].add_error(None, detail)
            return
    if name in form.fields and not form.fields[name].disabled:
        form.add_error(name, detail)
    else:
        form.add_error(None, exc.message)


def _row_index(message: str, prefix: str) -> int | None:
    if message.startswith(f"{prefix}[") and "]" in message:
        number = message[len(prefix) + 1:message.index("]")]
        return int(number) if number.isdigit() else None
    return None
