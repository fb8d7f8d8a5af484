"""The model id format, defined once: the job schema, the model store layout and the stack config use it.

``name`` or ``org/name``: lowercase letters, digits, ``.``, ``_``, ``-``; each part 1-63 characters, starting
with a letter or digit (safe as an S3 key part, a file name and a CloudWatch dimension).
"""

import re

MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?$"
MODEL_ID = re.compile(MODEL_ID_PATTERN)
