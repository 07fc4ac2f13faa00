# django-chunkfiles: new blobs go to an S3 bucket. boto3 finds the credentials
# where it always does (here: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in
# the environment, or an instance role).
import os

STORAGES["s3"] = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": {
        "bucket_name": os.environ["BLOBS_BUCKET"],
        "region_name": os.environ.get("BLOBS_REGION", "us-east-1"),
        # Only for S3-compatible servers (MinIO, SeaweedFS, Ceph); unset on AWS.
        "endpoint_url": os.environ.get("BLOBS_ENDPOINT_URL"),
    },
}

CHUNKFILES["STORAGE"] = "s3"
