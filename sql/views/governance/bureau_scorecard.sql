-- Per bureau and feed, its latest validated delivery's quality (as `govlake governance scorecard`, with required cells missing as a count): validity, uniqueness, timeliness, blocked loads, open issues. A bureau reads its own feeds' rows.
with latest as (
    select m.feed, max_by(m.load_id, m.event_at) as load_id
    from lake.governance.load_manifest as m
    where m.status in ('loaded', 'blocked')
    group by m.feed
),
last_load as (
    select m.load_id, m.status, m.rows_read, m.rows_loaded, m.rows_duplicate,
           row_number() over (partition by m.load_id order by m.event_at desc) as event_rank
    from lake.governance.load_manifest as m
    join latest as l on m.load_id = l.load_id
),
repeated as (
    select q.load_id, sum(q.unexpected_count) as repeated_keys
    from lake.governance.quality_results as q
    where q.rule like '%.unique'
    group by q.load_id
),
missing as (
    select q._load_id as load_id, count(*) as required_cells_missing
    from lake.governance.quarantine as q
    cross join unnest(q.failures) as f (column_name, header, rule, value)
    where f.rule = 'required'
    group by q._load_id
),
blocked as (
    select m.feed, count(*) as blocked_loads
    from lake.governance.load_manifest as m
    where m.status = 'blocked'
    group by m.feed
),
open_issues as (
    select i.feed, count(*) as open_issues
    from lake.governance.issues as i
    where i.status = 'open'
    group by i.feed
)
select
    c.bureau,
    c.feed,
    l.load_id as last_load_id,
    l.status as last_status,
    coalesce(mi.required_cells_missing, 0) as required_cells_missing,
    round(cast(l.rows_loaded as double) / greatest(1, l.rows_read - coalesce(l.rows_duplicate, 0)), 4) as validity,
    round(1 - cast(coalesce(l.rows_duplicate, 0) + coalesce(r.repeated_keys, 0) as double)
          / nullif(l.rows_read, 0), 4) as uniqueness,
    c.status as timeliness,
    coalesce(b.blocked_loads, 0) as blocked_loads,
    coalesce(o.open_issues, 0) as open_issues
from lake.governance.collection_list as c
left join latest as lt on lt.feed = c.feed
left join last_load as l on l.load_id = lt.load_id and l.event_rank = 1
left join repeated as r on r.load_id = l.load_id
left join missing as mi on mi.load_id = l.load_id
left join blocked as b on b.feed = c.feed
left join open_issues as o on o.feed = c.feed
