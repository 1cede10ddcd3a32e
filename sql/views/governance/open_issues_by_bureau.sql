-- Open governance issues (治理清单) per owner bureau and feed: how many, rows affected, oldest first seen.
select
    i.bureau,
    i.feed,
    count(*) as open_issues,
    sum(i.last_affected_rows) as rows_affected_last_delivery,
    min(i.first_seen_at) as oldest_first_seen_at
from lake.governance.issues as i
where i.status = 'open'
group by i.bureau, i.feed
