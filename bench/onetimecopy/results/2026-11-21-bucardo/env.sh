PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:$PATH
W=/tmp/sb
LP=55471; RP=55472
L="psql -X -q -h $W -p $LP -U postgres"
R="psql -X -q -h $W -p $RP -U postgres"
as_pg() { su postgres -s /bin/bash -c "$*"; }
