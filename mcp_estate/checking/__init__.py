"""`estate check`: the policy pack evaluated offline as Pulumi's analyzer would, and its reports."""
