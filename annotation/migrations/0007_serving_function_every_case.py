"""`arbiter_next` answers every case of `next`: installed again from annotation/sql/next.sql.

It now also serves a superuser without a membership, and returns lapsed leases to the pool
when nothing else is open, so the step-by-step path serves SQLite only. Reversing keeps the
installed function: the text it had before lives in no file any more, and the new one answers
the old cases as before.
"""

from django.db import migrations

from annotation.sql import install_next


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_campaign_announce_judgments"),
    ]

    operations = [migrations.RunPython(install_next, migrations.RunPython.noop)]
