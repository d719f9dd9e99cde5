"""`next` as a PostgreSQL function: one round trip instead of seven.

`next` was a token lookup and a transaction of five statements (BEGIN with the first, COMMIT
after the last); each round trip costs the server process more Python than the statement costs
the database. `arbiter_next` runs the same statements, in the same order and with the same locks
(`FOR UPDATE` of the membership, `SKIP LOCKED` on the item), inside the database; called in
autocommit it is one transaction. Its text is annotation/sql/next.sql (annotation.sql reads it
and fills in the tables and values); a later migration that changes the function installs the
file again. SQLite has no functions: there the step-by-step path serves `next`.
"""

from django.conf import settings
from django.db import migrations

from annotation.sql import install_next, remove_next


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_serving_indexes"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install_next, remove_next)]
