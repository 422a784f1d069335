import { describe, expect, it } from "vitest";
import { JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import {
  apiFilter,
  describeFilter,
  filterFromQuery,
  queryOfFilter,
} from "../../ui/src/job-filter.js";

/** The dashboard's job filter: the URL's query in, the same query and the API's conditions out. */
describe("the dashboard's job filter", () => {
  const full =
    "status=failed&status=canceled&tag=a&tag=b&queue=emails&host=api.example.com&method=POST" +
    "&url_contains=%2Finvoices&error_code=timeout&created_after=2026-11-01T00%3A00%3A00.000Z" +
    "&created_before=2026-11-02T00%3A00%3A00.000Z&finished_after=2026-11-03T00%3A00%3A00.000Z" +
    "&finished_before=2026-11-04T00%3A00%3A00.000Z&page_size=100";

  it("reads every condition from the URL and writes the same query back", () => {
    const f = filterFromQuery(new URLSearchParams(full));
    expect(f).toEqual({
      status: [JobStatus.FAILED, JobStatus.CANCELED],
      tag: ["a", "b"],
      queue: "emails",
      host: "api.example.com",
      method: "POST",
      urlContains: "/invoices",
      errorCode: "timeout",
      createdAfter: new Date("2026-11-01T00:00:00Z"),
      createdBefore: new Date("2026-11-02T00:00:00Z"),
      finishedAfter: new Date("2026-11-03T00:00:00Z"),
      finishedBefore: new Date("2026-11-04T00:00:00Z"),
      pageSize: 100,
    });
    expect(queryOfFilter(f)).toBe(`?${full}`);
  });

  it("ignores what it cannot read: unknown statuses, bad dates, odd page sizes", () => {
    const f = filterFromQuery(
      new URLSearchParams("status=lost&created_after=yesterday&page_size=7&tag="),
    );
    expect(f.status).toEqual([]);
    expect(f.tag).toEqual([]);
    expect(f.createdAfter).toBeNull();
    expect(f.pageSize).toBe(50);
    // The defaults make no query at all.
    expect(queryOfFilter(f)).toBe("");
  });

  it("gives the API the same conditions, dates as timestamps", () => {
    const f = filterFromQuery(new URLSearchParams(full));
    const a = apiFilter(f);
    expect(a).toMatchObject({
      status: [JobStatus.FAILED, JobStatus.CANCELED],
      tag: ["a", "b"],
      queue: "emails",
      host: "api.example.com",
      method: "POST",
      urlContains: "/invoices",
      errorCode: "timeout",
    });
    expect(Number(a.createdAfter?.seconds)).toBe(Date.parse("2026-11-01T00:00:00Z") / 1000);
    expect(Number(a.finishedBefore?.seconds)).toBe(Date.parse("2026-11-04T00:00:00Z") / 1000);
    expect(apiFilter(filterFromQuery(new URLSearchParams(""))).createdAfter).toBeUndefined();
  });

  it("says in words what a bulk action over the filter takes", () => {
    expect(describeFilter(filterFromQuery(new URLSearchParams("tag=bulk&status=queued")))).toBe(
      "the filter (status queued; tags bulk)",
    );
    expect(describeFilter(filterFromQuery(new URLSearchParams("")))).toBe(
      "no filter (every job you may see)",
    );
  });
});
