-- The latest status of every delivery (one row per load) from the append-only load manifest.
with ranked as (
    select
        m.*,
        row_number() over (partition by m.load_id order by m.event_at desc) as event_rank
    from lake.governance.load_manifest as m
)
select
    r.load_id,
    r.feed,
    r.bureau,
    r.source_file,
    r.status,
    r.rows_read,
    r.rows_loaded,
    r.rows_quarantined,
    r.rows_duplicate,
    r.replaces_load_id,
    r.message,
    r.event_at as status_at
from ranked as r
where r.event_rank = 1
