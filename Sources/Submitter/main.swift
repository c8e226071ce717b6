runSubmitter()
