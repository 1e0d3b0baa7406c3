package reactor

import "go.uber.org/zap"

func zapString(k, v string) zap.Field  { return zap.String(k, v) }
func zapInt(k string, v int) zap.Field { return zap.Int(k, v) }
