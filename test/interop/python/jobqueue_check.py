"""A Python gRPC client of JobQueue, from code generated out of proto/ with Debian's protoc.

Usage: python3 jobqueue_check.py <generated-dir> <host:port> <api-key> <target-url>

Enqueues a job with a JSON body, watches it to its end, reads its result and attempts, lists it by
tag, and provokes the errors a client must be able to tell apart; prints what it saw as JSON.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402
from jobqueue.v1 import job_pb2  # noqa: E402
from jobqueue.v1 import job_queue_service_pb2 as pb  # noqa: E402
from jobqueue.v1 import job_queue_service_pb2_grpc as pb_grpc  # noqa: E402

server, api_key, target = sys.argv[2], sys.argv[3], sys.argv[4]
auth = [("authorization", f"Bearer {api_key}")]
out = {}

with grpc.insecure_channel(server) as channel:
    stub = pb_grpc.JobQueueServiceStub(channel)

    body = json_format.ParseDict({"from": "python", "n": [1, 2.5, None]}, struct_pb2.Value())
    enqueued = stub.EnqueueJob(
        pb.EnqueueJobRequest(
            url=target,
            body=body,
            tags=["python"],
            max_attempts=2,
            backoff_strategy=job_pb2.BACKOFF_STRATEGY_LINEAR,
            headers={"X-Client": "python"},
        ),
        metadata=auth,
        timeout=10,
    )
    out["enqueued"] = {
        "job_id": enqueued.job_id,
        "status": job_pb2.JobStatus.Name(enqueued.status),
    }

    statuses = []
    for change in stub.WatchJob(pb.WatchJobRequest(job_id=enqueued.job_id), metadata=auth, timeout=30):
        statuses.append(job_pb2.JobStatus.Name(change.job.status))
    out["watched"] = statuses

    job = stub.GetJob(pb.GetJobRequest(job_id=enqueued.job_id), metadata=auth, timeout=10).job
    out["job"] = {
        "method": job.method,
        "attempt": job.attempt,
        "body": json_format.MessageToDict(job.body),
        "backoff": job_pb2.BackoffStrategy.Name(job.backoff_strategy),
        "owner": job.owner,
        "has_ttl": job.HasField("ttl_seconds"),
    }

    result = stub.GetJobResult(pb.GetJobResultRequest(job_id=enqueued.job_id), metadata=auth, timeout=10)
    out["result"] = {
        "response_status": result.response_status,
        "response_body": json_format.MessageToDict(result.response_body),
        "encoding": job_pb2.BodyEncoding.Name(result.response_body_encoding),
    }

    attempts = stub.ListJobAttempts(pb.ListJobAttemptsRequest(job_id=enqueued.job_id), metadata=auth, timeout=10)
    out["attempts"] = [job_pb2.AttemptOutcome.Name(a.outcome) for a in attempts.attempts]

    listed = stub.ListJobs(pb.ListJobsRequest(tag=["python"]), metadata=auth, timeout=10)
    out["listed"] = [j.job_id for j in listed.jobs]

    def error_of(call):
        try:
            call()
        except grpc.RpcError as err:
            return {"code": err.code().name, "message": err.details()}
        return None

    out["errors"] = {
        "bad_url": error_of(lambda: stub.EnqueueJob(pb.EnqueueJobRequest(url="ftp://example.com/"), metadata=auth, timeout=10)),
        "missing": error_of(lambda: stub.GetJob(pb.GetJobRequest(job_id="j_" + "0" * 26), metadata=auth, timeout=10)),
        "finished": error_of(lambda: stub.CancelJob(pb.CancelJobRequest(job_id=enqueued.job_id), metadata=auth, timeout=10)),
        "no_key": error_of(lambda: stub.ListJobs(pb.ListJobsRequest(), timeout=10)),
    }

print(json.dumps(out))
