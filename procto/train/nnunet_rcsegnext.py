"""Former path of :mod:`procto.train.nnunet.trainers` (procto's nnU-Net trainer classes), kept for the site-packages
shims that older ``procto nnunet-trainers --install`` wrote (``from procto.train.nnunet_rcsegnext import *``)."""

from procto.train.nnunet.trainers import *  # noqa: F401,F403
from procto.train.nnunet.trainers import __all__  # noqa: F401
