"""Install cherry_nb from the nbdev 2 `settings.ini` (which holds name, version and requirements)."""
import shlex
from configparser import ConfigParser
from setuptools import find_packages, setup

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature',
            '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
# every `<name>_requirements` key of settings.ini is the extra [<name>]; [dev] (the tests) includes all of them
extras = {k[:-len('_requirements')]: shlex.split(v) for k, v in cfg.items()
          if k.endswith('_requirements') and k != 'requirements'}
extras['dev'] = sorted({r for reqs in extras.values() for r in reqs})
min_python = cfg['min_python']
lic = licenses[cfg['license']]
console_scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]
command_plugins = [s.strip() for s in cfg.get('command_plugins', '').split() if s.strip()]

setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=lic[0],
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'License :: ' + lic[1],
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    keywords=cfg['keywords'],
    packages=find_packages(include=['cherry_nb', 'cherry_nb.*']),
    include_package_data=True,
    package_data={'cherry_nb': ['workflows/*.ipynb', 'workflows/*.checks.json']},
    install_requires=requirements,
    extras_require=extras,
    python_requires='>=' + min_python,
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'cherry_nb.commands': command_plugins,
                  'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
)
