runQuery()
