"""Jobs: the job spec shared by the API and the worker (``schema``), job ids (``ids``), the DynamoDB
job store (``store``), the public JSON view of a job (``views``) and one error hierarchy (``errors``).
"""
