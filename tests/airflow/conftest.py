"""The servers of the plugin tests, for the Airflow tests: moto's S3 server, fake-gcs-server and Redis.

Imported from the plugin test folders (not copied), so every folder starts and checks them the same way.
"""

from ..gcs.conftest import gcs_bucket, gcs_emulator, raw_client  # noqa: F401 - fixtures, used by name
from ..redis.conftest import admin, redis_section, redis_url  # noqa: F401 - fixtures, used by name
from ..s3.conftest import aws_environment, bucket, moto_endpoint, s3_client  # noqa: F401 - fixtures, used by name
