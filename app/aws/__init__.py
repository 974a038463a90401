"""AWS's published API as KeyLedger speaks it: botocore's service models and the one table
of domain errors to AWS error codes. Shared by the protocol adapters and the auditor (a
CloudTrail record names the AWS error code), so it sits below both."""
